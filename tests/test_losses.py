import pytest
import torch
import torch.nn.functional as F

from distill_lib.losses import chunked_token_loss, token_cross_entropy, token_divergence, topk_forward_kl


def logits(seed, shape=(2, 7, 11)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 2


def reference_kl(p, q):  # KL(p || q) from probabilities, summed over tokens
    return (p * (p.log() - q.log())).sum()


@pytest.mark.parametrize("kind", ["forward", "reverse", "jsd"])
def test_divergence_of_identical_distributions_is_zero(kind):
    z = logits(0)
    assert float(token_divergence(z, z.clone(), 2.0, kind)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_divergences_match_reference_formulas(temperature):
    zs, zt = logits(1), logits(2)
    ps, pt = F.softmax(zs / temperature, -1), F.softmax(zt / temperature, -1)
    assert float(token_divergence(zs, zt, temperature, "forward")) == pytest.approx(float(reference_kl(pt, ps)), rel=1e-5)
    assert float(token_divergence(zs, zt, temperature, "reverse")) == pytest.approx(float(reference_kl(ps, pt)), rel=1e-5)
    beta = 0.3
    m = beta * pt + (1 - beta) * ps
    jsd = beta * reference_kl(pt, m) + (1 - beta) * reference_kl(ps, m)
    assert float(token_divergence(zs, zt, temperature, "jsd", beta)) == pytest.approx(float(jsd), rel=1e-5)


def test_forward_kl_gradient_is_the_textbook_one():
    # d/dz_s KL(p_t || softmax(z_s / T)) = (softmax(z_s / T) - p_t) / T
    zs, zt, T = logits(3).requires_grad_(), logits(4), 2.0
    token_divergence(zs, zt, T, "forward").backward()
    expected = (F.softmax(zs.detach() / T, -1) - F.softmax(zt / T, -1)) / T
    torch.testing.assert_close(zs.grad, expected, rtol=1e-5, atol=1e-7)


def test_topk_kl_with_the_whole_vocabulary_is_the_forward_kl():
    zs, zt = logits(5), logits(6)
    values, ids = zt.topk(zt.size(-1), dim=-1)
    assert float(topk_forward_kl(zs, ids, values, 1.7)) == pytest.approx(float(token_divergence(zs, zt, 1.7)), rel=1e-5)


def test_chunked_loss_equals_full_loss_and_gradient():
    hidden = torch.randn(2, 10, 6, requires_grad=True)
    head = torch.nn.Linear(6, 13)
    labels = torch.randint(0, 13, (2, 10))
    teacher = torch.randn(2, 10, 13)

    def fn(h, t, y):
        z = head(h)
        return torch.stack([token_cross_entropy(z, y), token_divergence(z, t, 2.0, "jsd")])

    full = fn(hidden, teacher, labels)
    full.sum().backward()
    grad_full, head_grad_full = hidden.grad.clone(), head.weight.grad.clone()
    hidden.grad, head.weight.grad = None, None
    chunked = chunked_token_loss(fn, 3, hidden, teacher, labels)  # 3 + 3 + 3 + 1 positions
    chunked.sum().backward()
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(hidden.grad, grad_full, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(head.weight.grad, head_grad_full, rtol=1e-5, atol=1e-7)


def test_an_unknown_divergence_is_an_input_error_naming_the_valid_ones():
    from distill_lib.config import ConfigError
    from distill_lib.losses import token_divergence

    logits = torch.zeros(2, 5)
    with pytest.raises(ConfigError, match=r"kd_divergence: unknown 'kl' \(valid: forward, reverse, jsd\)"):
        token_divergence(logits, logits, 1.0, "kl")
