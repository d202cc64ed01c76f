"""PPO maths on hand-computed numbers: GAE, KL penalty, clipped policy/value losses, KL control, win-rate."""

from __future__ import annotations

import math

import pytest
import torch

from engine.rl import losses as L


def test_gae_three_steps_by_hand_with_a_padded_tail():
    # row 0: three real tokens; row 1: the same three plus a padded tail holding junk
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.6, 0.7, 0.0], [0.5, 0.6, 0.7, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0]])
    adv, ret = L.gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # δ2 = 1 − 0.7 = 0.3;  δ1 = 0.9·0.7 − 0.6 = 0.03;  δ0 = 0.9·0.6 − 0.5 = 0.04
    # A2 = 0.3;  A1 = 0.03 + 0.45·0.3 = 0.165;  A0 = 0.04 + 0.45·0.165 = 0.11425
    expected = torch.tensor([0.11425, 0.165, 0.3, 0.0])
    for row in range(2):
        torch.testing.assert_close(adv[row], expected)
        torch.testing.assert_close(ret[row], torch.tensor([0.61425, 0.765, 1.0, 0.0]))


def test_gae_gamma_lambda_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[0.1, -0.2, 2.0]])
    values = torch.tensor([[1.0, 0.5, 0.25]])
    adv, ret = L.gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    torch.testing.assert_close(ret, torch.tensor([[1.9, 1.8, 2.0]]))
    torch.testing.assert_close(adv, torch.tensor([[0.9, 1.3, 1.75]]))


def test_kl_penalty_is_zero_when_policy_equals_reference():
    logp = torch.log(torch.tensor([[0.3, 0.5, 0.9]]))
    kl = L.per_token_kl(logp, logp.clone())
    rewards, non_score = L.kl_penalised_rewards(torch.tensor([1.5]), kl, torch.ones(1, 3), beta=0.2)
    assert torch.count_nonzero(non_score) == 0
    torch.testing.assert_close(rewards, torch.tensor([[0.0, 0.0, 1.5]]))


def test_kl_penalised_rewards_put_the_score_on_the_last_real_token():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 7.0, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    rewards, non_score = L.kl_penalised_rewards(torch.tensor([1.0, 2.0]), kl, mask, beta=0.5)
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, -0.1, 0.85], [1.75, 0.0, 0.0]]))
    torch.testing.assert_close(non_score.sum(1), torch.tensor([-0.3, -0.25]))


def test_policy_loss_inside_and_outside_the_clip_range():
    ratio = torch.tensor([[1.1, 1.5, 0.5, 0.5, 3.0]])
    adv = torch.tensor([[2.0, 2.0, 2.0, -1.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])  # the last token is padding and must not count
    new, old = torch.log(ratio), torch.zeros(1, 5)
    loss, clipfrac, approxkl = L.policy_loss(new, old, adv, mask, clip=0.2)
    # per token max(−A·r, −A·clip(r, 0.8, 1.2)):
    #   r=1.1, A=2: inside → −2.2          r=1.5, A=2: clipped → max(−3.0, −2.4) = −2.4 (clipped)
    #   r=0.5, A=2: max(−1.0, −1.6) = −1.0  r=0.5, A=−1: max(0.5, 0.8) = 0.8 (clipped)
    assert loss.item() == pytest.approx((-2.2 - 2.4 - 1.0 + 0.8) / 4)
    assert clipfrac.item() == pytest.approx(0.5)
    logs = [math.log(1.1), math.log(1.5), math.log(0.5), math.log(0.5)]
    assert approxkl.item() == pytest.approx(0.5 * sum(x * x for x in logs) / 4)


def test_policy_loss_gradient_vanishes_where_clipped():
    new = torch.log(torch.tensor([[1.5, 1.1]])).requires_grad_()
    loss, _, _ = L.policy_loss(new, torch.zeros(1, 2), torch.tensor([[2.0, 2.0]]), torch.ones(1, 2), 0.2)
    loss.backward()
    assert new.grad[0, 0].item() == 0.0
    assert new.grad[0, 1].item() == pytest.approx(-2.0 * 1.1 / 2)  # d(−A·r)/dlogp = −A·r, mean of 2


def test_value_loss_clipped_and_not():
    old = torch.tensor([[1.0, 1.0]])
    new = torch.tensor([[1.5, 1.1]])
    returns = torch.tensor([[2.0, 2.0]])
    loss, clipfrac = L.value_loss(new, old, returns, torch.ones(1, 2), clip=0.2)
    # token 0: V clipped to 1.2 → max(0.25, 0.64) = 0.64 (clipped); token 1: inside → 0.81
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81) / 2)
    assert clipfrac.item() == pytest.approx(0.5)


def test_masked_whiten_and_mean():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    assert L.masked_mean(x, mask).item() == pytest.approx(2.0)
    w = L.masked_whiten(x, mask)
    torch.testing.assert_close(w, torch.tensor([[-1.0, 0.0, 1.0, 0.0]]), atol=1e-4, rtol=0)  # unbiased sd = 1
    kept = L.masked_whiten(x, mask, shift_mean=False)
    torch.testing.assert_close(kept, torch.tensor([[1.0, 2.0, 3.0, 0.0]]), atol=1e-4, rtol=0)


def test_entropy_and_logprobs_from_logits():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]])
    torch.testing.assert_close(L.entropy_from_logits(logits), torch.tensor([[math.log(4), 0.0]]))
    lp = L.logprobs_from_logits(logits, torch.tensor([[2, 0]]))
    torch.testing.assert_close(lp, torch.tensor([[-math.log(4), 0.0]]))


def test_kl_controllers():
    fixed = L.kl_controller(0.1, 0.0, 10000)
    fixed.update(50.0, 1000)
    assert fixed.value == 0.1
    up = L.kl_controller(0.1, 6.0, 10000)
    up.update(12.0, 1000)  # error clipped to +0.2 → β·(1 + 0.2·0.1)
    assert up.value == pytest.approx(0.102)
    down = L.kl_controller(0.1, 6.0, 10000)
    down.update(5.4, 1000)  # error −0.1 → β·(1 − 0.01)
    assert down.value == pytest.approx(0.099)
    restored = L.kl_controller(0.1, 6.0, 10000)
    restored.load_state_dict(up.state_dict())
    assert restored.value == up.value


def test_win_rate_with_ties_and_standard_error():
    rate, se, n = L.win_rate([1.0, 1.0, 0.5, 0.0])
    assert (rate, n) == (0.625, 4)
    # sample variance: (2·0.375² + 0.125² + 0.625²)/3 = 0.6875/3
    assert se == pytest.approx(math.sqrt(0.6875 / 3 / 4))
    assert L.win_rate([0.5, 0.5])[:2] == (0.5, 0.0)
    assert math.isnan(L.win_rate([1.0])[1])
    assert L.win_rate([])[2] == 0


# ---------------------------------------------------------------------------- critic-free advantages


def test_grpo_advantages_by_hand_including_a_group_that_ties():
    # prompt 1: scores 1, 2, 3 → mean 2, sample std 1; prompt 2: all 5 → nothing to learn, A = 0
    adv = L.grpo_advantages(torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0]), k=3)
    expected = [-1 / (1 + 1e-4), 0.0, 1 / (1 + 1e-4), 0.0, 0.0, 0.0]
    assert torch.allclose(adv, torch.tensor(expected), atol=1e-7)
    # k = 4: 4, 4, 4, 8 → mean 5, deviations −1, −1, −1, 3, sample variance 12 / 3 = 4, std 2
    adv = L.grpo_advantages(torch.tensor([4.0, 4.0, 4.0, 8.0]), k=4)
    assert torch.allclose(adv, torch.tensor([-1.0, -1.0, -1.0, 3.0]) / (2 + 1e-4), atol=1e-7)
    assert torch.all(torch.isfinite(L.grpo_advantages(torch.zeros(4), k=2)))


def test_rloo_advantages_by_hand_leave_one_out():
    # 1, 2, 3: the others' means are 2.5, 2, 1.5 → −1.5, 0, +1.5; a tied group gives 0; k = 2 is s_i − s_j
    adv = L.rloo_advantages(torch.tensor([1.0, 2.0, 3.0, 7.0, 7.0, 7.0]), k=3)
    assert adv.tolist() == [-1.5, 0.0, 1.5, 0.0, 0.0, 0.0]
    assert L.rloo_advantages(torch.tensor([0.25, 1.0]), k=2).tolist() == [-0.75, 0.75]
    # the leave-one-out baseline is the group mean's deviation scaled by k / (k − 1)
    s = torch.tensor([0.3, -1.2, 2.0, 0.7])
    assert torch.allclose(L.rloo_advantages(s, 4), (s - s.mean()) * 4 / 3)


@pytest.mark.parametrize("fn", [L.grpo_advantages, L.rloo_advantages])
def test_group_advantages_refuse_a_group_of_one_or_a_ragged_rollout(fn):
    with pytest.raises(ValueError, match="k ≥ 2"):
        fn(torch.tensor([1.0, 2.0]), 1)
    with pytest.raises(ValueError, match="k ≥ 2"):
        fn(torch.tensor([1.0, 2.0, 3.0]), 2)


def test_k3_kl_is_the_exact_kl_in_expectation_never_negative_and_pulls_toward_the_reference():
    pi, ref = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.5, 0.3])
    k3 = L.k3_kl(pi.log(), ref.log())
    assert torch.all(k3 >= 0)
    exact_kl = (pi * (pi / ref).log()).sum()  # KL(π‖π_ref) = 0.5 ln 2.5 + 0.3 ln 0.6 + 0.2 ln(2/3)
    assert torch.isclose((pi * k3).sum(), exact_kl, atol=1e-7)
    assert abs(exact_kl.item() - (0.5 * math.log(2.5) + 0.3 * math.log(0.6) + 0.2 * math.log(2 / 3))) < 1e-6
    # one token: π = 0.5, π_ref = 0.25 → e^(ln 0.5) − ln 0.5 − 1 = 0.5 + ln 2 − 1
    assert abs(L.k3_kl(torch.tensor(math.log(0.5)), torch.tensor(math.log(0.25))).item() - (math.log(2) - 0.5)) < 1e-6
    assert L.k3_kl(torch.tensor(-1.3), torch.tensor(-1.3)).item() == 0.0
    logp = torch.tensor([math.log(0.5)], requires_grad=True)
    L.k3_kl(logp, torch.tensor([math.log(0.25)])).sum().backward()
    assert logp.grad.item() > 0  # descending the term lowers log π toward log π_ref
