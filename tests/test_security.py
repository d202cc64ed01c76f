"""Nothing in a config or a run id can make aplot run a command, execute shipped code, unpickle, or
write outside its run store.

Scans read the repository's own Python with `ast` (not grep, so comments and strings never count);
behaviour tests run the real loaders and the real CLI.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _cli import aplot, one_line_error

from engine import config as C
from engine.runs import launch
from engine.runs import store as mf

ROOT = Path(__file__).resolve().parents[1]
OUR_CODE = ["engine", "aplot_tui", "bench", "scripts"]






def python_files(dirs: list[str]) -> list[Path]:
    return [p for d in dirs for p in sorted((ROOT / d).rglob("*.py")) if ".venv" not in p.parts]


def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            yield node


def dotted(node: ast.AST) -> str:
    """`os.system` for os.system(...), `subprocess.Popen` for subprocess.Popen(...), `eval` for eval(...)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def kwarg(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}"


# ------------------------------------------------------------------------------ commands


def test_subprocesses_start_from_argument_lists_only():
    """No shell anywhere (tests included): a config value can never become a shell word."""
    shells, spawners = [], 0
    for path in python_files(OUR_CODE + ["tests"]):
        for call in calls(path):
            name = dotted(call.func)
            if name in ("os.system", "os.popen", "eval", "exec") or name.startswith(("os.exec", "os.spawn")):
                shells.append(f"{where(path, call)} {name}")
            shell = kwarg(call, "shell")
            if shell is not None and not (isinstance(shell, ast.Constant) and shell.value is False):
                shells.append(f"{where(path, call)} shell=")
            if name in ("subprocess.run", "subprocess.Popen", "subprocess.call", "subprocess.check_output",
                        "subprocess.check_call"):
                spawners += 1
                first = call.args[0] if call.args else kwarg(call, "args")
                if isinstance(first, (ast.Constant, ast.JoinedStr, ast.BinOp)):  # a command string
                    shells.append(f"{where(path, call)} string command")
    assert spawners >= 5, "the scan found too few subprocess calls to mean anything"
    assert shells == []


def test_the_supervisor_passes_config_values_as_single_arguments(tmp_path):
    """A hostile accelerate_config path stays one argv element: there is no shell to split it."""

    evil = tmp_path / "x.yaml; touch pwned; echo"
    evil.write_text("distributed_type: NO\nnum_processes: 1\n")
    cfg = C.from_dict({"launch": {"accelerate_config": str(evil)}})
    argv = launch.argv(cfg, tmp_path / "runs" / "20260101-000000-rm-x-0000")
    assert argv[argv.index("--config_file") + 1] == str(evil)
    assert argv[0] == sys.executable and all(isinstance(a, str) for a in argv)


# ------------------------------------------------------------------------------ run ids and the store


@pytest.mark.parametrize("ref", ["..", "../..", "../../etc/passwd", "/etc", "/tmp/x", "~", "~root", ".",  # noqa: S108 - a path string the test expects to be refused, never opened
                                 "./x", "x/../..", "20261129-211503-rm-x-0000/../..", "a\x00b", "\x00",
                                 "..\\..", "-rf", "*", "", " ", "20261129-211503-rm-x-0000\n"])
def test_run_refs_never_leave_the_store(tmp_path, ref):
    root = tmp_path / "runs"
    root.mkdir()
    real = mf.run_paths(root, "20261129-211503-rm-x-0000")
    mf.create(real, name="x", kind="rm", config={})
    try:
        found = mf.find_run(root, ref)
    except mf.RunError as e:
        assert "\n" not in str(e).strip()
    else:
        assert found.dir.resolve().parent == root.resolve()
    with pytest.raises(mf.RunError):
        mf.run_paths(root, ref)


def test_a_symlinked_run_folder_is_not_a_run(tmp_path):
    """A link inside the store to a folder elsewhere is refused by id and by unique part alike."""
    root, outside = tmp_path / "runs", tmp_path / "outside"
    root.mkdir()
    target = mf.RunPaths(outside / "20261129-211503-rm-x-0000")
    mf.create(target, name="x", kind="rm", config={})
    (root / target.id).symlink_to(target.dir, target_is_directory=True)
    assert mf.list_runs(root) == []
    for ref in (target.id, target.id[-4:]):
        with pytest.raises(mf.RunError):
            mf.find_run(root, ref)


def test_a_hostile_run_name_stays_inside_the_store(tmp_path):
    from engine.runs import lifecycle

    root = tmp_path / "runs"
    for name in ("../../../../tmp/evil", "/etc/passwd", "a\x00b", "..", "名前 \n\t", "-" * 300):
        paths = lifecycle.create(C.from_dict({"name": name}), root)
        assert mf.RUN_ID_RE.match(paths.id) and paths.dir.parent == root
        assert mf.read(paths)["name"] == name  # kept verbatim in the manifest, never used as a path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_cli_commands_refuse_escaping_run_ids(runs_dir):
    for cmd in ("show", "stop", "resume", "export"):
        line = one_line_error(aplot(cmd, "../../etc", runs_dir=runs_dir))
        assert "not a run id" in line


# ------------------------------------------------------------------------------ data paths


@pytest.fixture
def special_files(tmp_path):
    """Data-file names that are not regular files: devices (directly and through a link), a FIFO, a folder."""
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")
    (tmp_path / "stdin.jsonl").symlink_to("/dev/stdin")
    (tmp_path / "dir.jsonl").mkdir()
    return {"/dev/zero": "unsupported file type", "/dev/stdin": "unsupported file type",
            str(fifo): "not a regular file", str(tmp_path / "zero.jsonl"): "not a regular file",
            str(tmp_path / "stdin.jsonl"): "not a regular file", str(tmp_path / "dir.jsonl"): "not a regular file"}


def test_load_pairs_refuses_devices_fifos_and_folders_without_reading(special_files):
    from engine.data.rows import DataError
    from engine.data.sources import load_pairs

    def hung(*_):
        raise TimeoutError("load_pairs blocked on a special file")

    old = signal.signal(signal.SIGALRM, hung)
    try:
        for path, message in special_files.items():
            signal.alarm(5)  # a read of /dev/zero never ends; a FIFO with no writer blocks forever
            with pytest.raises(DataError, match=message):
                load_pairs(path)
            signal.alarm(0)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_cli_preflight_refuses_special_files_before_launching(tiny_config, runs_dir, special_files):
    for path in ["/dev/zero", "/dev/stdin", *list(special_files)[2:4]]:
        line = one_line_error(aplot("run", tiny_config, f"data.train={json.dumps(path)}", runs_dir=runs_dir,
                                    timeout=60))
        assert "data.train" in line and path in line
    assert list(runs_dir.iterdir()) == []  # nothing launched


# ------------------------------------------------------------------------------ remote code and pickles


def from_pretrained_calls():
    for path in python_files(["engine"]):
        tree = ast.parse(path.read_text(), str(path))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            dicts = {t.id: n.value for n in ast.walk(fn) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Dict)
                     for t in n.targets if isinstance(t, ast.Name)}
            for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call)):
                if isinstance(call.func, ast.Attribute) and call.func.attr == "from_pretrained":
                    # peft's loaders read adapter_config.json and safetensors only: no code path to trust
                    if dotted(call.func.value) in ("PeftConfig", "PeftModel"):
                        continue
                    yield path, call, dicts


def trust_value(call: ast.Call, dicts: dict) -> ast.expr | None:
    """The expression given as trust_remote_code, directly or through a `**kwargs` dict literal."""
    value = kwarg(call, "trust_remote_code")
    for k in call.keywords:
        if k.arg is None and isinstance(k.value, ast.Name) and k.value.id in dicts:
            d = dicts[k.value.id]
            for key, v in zip(d.keys, d.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "trust_remote_code":
                    value = v
    return value


def safe_trust(value: ast.expr | None) -> bool:
    """False, or the config's own switch (`cfg.trust_remote_code`, default False)."""
    return (isinstance(value, ast.Constant) and value.value is False) or (
        isinstance(value, ast.Attribute) and value.attr == "trust_remote_code")


def test_trust_remote_code_comes_only_from_the_config():
    found = list(from_pretrained_calls())
    assert len(found) >= 8
    unsafe = [where(p, c) for p, c, d in found if trust_value(c, d) is not None and not safe_trust(trust_value(c, d))]
    assert unsafe == []
    assert C.Config().model.trust_remote_code is False


def test_every_from_pretrained_says_trust_remote_code():
    assert [where(p, c) for p, c, d in from_pretrained_calls() if trust_value(c, d) is None] == []


def test_a_checkpoint_with_custom_code_is_refused_not_executed(tmp_path):
    """The folder names a config class in its own evil.py; loading it must stop before importing it."""
    evil = tmp_path / "evil"
    evil.mkdir()
    auto = {k: "evil.Evil" for k in ("AutoConfig", "AutoModel", "AutoModelForSequenceClassification",
                                     "AutoModelForCausalLM")}
    (evil / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": auto}))
    (evil / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["evil.Evil", None]}}))
    (evil / "evil.py").write_text("import pathlib\npathlib.Path(__file__).with_name('EXECUTED').touch()\n")
    code = (
        "import sys\nfrom engine import config as C, models\nfrom engine.rl import policy\n"
        f"p = {str(evil)!r}\ncfg = C.ModelSection(name=p)\n"
        "for load in (lambda: models.load_reward_model(p), lambda: models.build_reward_model(cfg, None),\n"
        "             lambda: models.load_tokenizer(cfg, None), lambda: models.SentenceEncoder(p),\n"
        "             lambda: policy.load_causal_lm(p), lambda: policy.load_folder_tokenizer(p)):\n"
        "    try:\n        load()\n    except Exception as e:\n        print('refused', type(e).__name__)\n"
        "    else:\n        print('LOADED')\n"
    )
    # stdin at EOF, as the supervisor starts every trainer: transformers' y/N prompt reads "no"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert out.stdout.count("refused") == 6, out.stdout + out.stderr[-2000:]
    assert not (evil / "EXECUTED").exists()


def test_torch_load_is_only_called_with_weights_only():
    loads = []
    for path in python_files(OUR_CODE):
        for call in calls(path):
            name = dotted(call.func)
            if name in ("pickle.load", "pickle.loads", "dill.load", "joblib.load", "cloudpickle.load"):
                loads.append(f"{where(path, call)} {name}")
            if name.endswith("load") and name.split(".")[0] in ("torch", "np", "numpy"):
                wo, ap = kwarg(call, "weights_only"), kwarg(call, "allow_pickle")
                if name == "torch.load" and not (isinstance(wo, ast.Constant) and wo.value is True):
                    loads.append(f"{where(path, call)} torch.load without weights_only=True")
                if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                    loads.append(f"{where(path, call)} allow_pickle")
            if name.endswith("register_for_checkpointing"):  # accelerate unpickles those with weights_only=False
                loads.append(f"{where(path, call)} {name}")
    assert loads == []


def test_accelerate_loads_our_checkpoint_files_with_weights_only():
    """Verified in the installed accelerate: `load` defaults to weights_only=True, and the only
    weights_only=False is for `custom_checkpoint_*.pkl` (register_for_checkpointing, unused here)."""
    import accelerate.checkpointing as ck
    import accelerate.utils.other as other

    (load_fn,) = [n for n in ast.parse(Path(other.__file__).read_text()).body
                  if isinstance(n, ast.FunctionDef) and n.name == "load"]
    defaults = [n for n in ast.walk(load_fn) if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Subscript)
                and ast.literal_eval(n.targets[0].slice) == "weights_only"]
    assert [ast.literal_eval(n.value) for n in defaults] == [True]
    tree = ast.parse(Path(ck.__file__).read_text())
    unsafe = []
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call) and dotted(n.func) == "load"):
            wo = kwarg(call, "weights_only")
            if wo is not None and not (isinstance(wo, ast.Constant) and wo.value is True):
                unsafe.append(fn.name)
    assert unsafe == ["load_custom_state"]


def test_a_real_run_holds_only_safe_files_and_writes_only_in_its_folder(tiny_config, tmp_path, runs_dir):
    """Hostile names in the config (run and eval set called ../../evil) and a 2-step run: every file
    that appeared in the test's scratch tree is inside the run's folder, weights are safetensors, and
    each pickle-format file loads with weights_only=True (the RNG state with accelerate's numpy
    allow-list, exactly as resume loads it)."""
    import torch
    from accelerate.utils.other import load as accelerate_load

    ood = tmp_path / "ood.jsonl"
    ood.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "yes indeed", "rejected": "no"}) + "\n"
                           for i in range(4)))
    cfg = tmp_path / "hostile.toml"
    cfg.write_text(tiny_config.read_text().replace('name = "tiny"', 'name = "../../../evil"')
                   + f'\n[data.eval]\n"../../evil" = {json.dumps(str(ood))}\n')
    before = {p for p in tmp_path.rglob("*")}
    proc = aplot("run", cfg, "optim.max_steps=2", "checkpoint.every=1", "eval.every=0", "-q", runs_dir=runs_dir)
    assert proc.returncode == 0, proc.stderr
    ((paths, manifest),) = mf.list_runs(runs_dir)
    new = {p for p in tmp_path.rglob("*")} - before
    cache = runs_dir / ".cache"  # the token cache beside the store: plain arrays, never a pickle
    cached = {p for p in new if p == cache or cache in p.parents}
    assert {p.suffix for p in cached if p.is_file()} == {".npz"}
    assert not [p for p in cached if p.is_file() and np.load(p, allow_pickle=False).files == []]
    new -= cached
    assert new and all(p == paths.dir or paths.dir in p.parents for p in new), sorted(map(str, new))
    assert manifest["config"]["data"]["eval"] == {"../../evil": str(ood)}
    files = [p for p in paths.checkpoints.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".safetensors", ".bin", ".pkl", ".json", ""}
    assert not [p for p in files if p.name.startswith("custom_checkpoint")]
    for p in files:
        if p.suffix == ".bin":
            assert isinstance(torch.load(p, weights_only=True), dict)
        elif p.suffix == ".pkl":
            state = accelerate_load(p)
            assert {"random_state", "numpy_random_seed", "torch_manual_seed"} <= set(state)
