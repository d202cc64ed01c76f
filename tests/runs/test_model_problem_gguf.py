"""A GGUF checkpoint's folder has no config.json (the GGUF carries it): the preflight must take a
folder that holds `model.gguf_file`, and name the file when it is missing."""

from __future__ import annotations

from engine.runs import lifecycle


def test_a_folder_with_its_gguf_file_passes_and_a_missing_file_is_named(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert lifecycle.model_problem(str(tmp_path), "m.gguf") == ""
    assert lifecycle.model_problem(str(tmp_path), "other.gguf") == (
        f"model.gguf_file: no 'other.gguf' in the model folder {str(tmp_path)!r}")
    assert "no config.json" in lifecycle.model_problem(str(tmp_path))  # without gguf_file: as before
