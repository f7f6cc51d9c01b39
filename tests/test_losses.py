import pytest
import torch
import torch.nn.functional as F

from distill_lib.losses import head_loss_sums, token_cross_entropy, token_divergence, topk_forward_kl


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


def _head_case(hidden_requires_grad=True):
    torch.manual_seed(0)
    embed = torch.nn.Embedding(13, 6)
    head = torch.nn.Linear(6, 13)
    head.weight = embed.weight  # tied, as in SmolLM2: the weight gets gradients from both uses
    ids = torch.randint(0, 13, (2, 11))
    teacher = torch.randn(2, 10, 13)

    def fn(z, t, y):
        return torch.stack([token_cross_entropy(z, y), token_divergence(z, t, 2.0, "jsd")])

    def hidden():
        h = torch.tanh(embed(ids[:, :-1]))
        return h if hidden_requires_grad else h.detach()

    return embed, head, ids, teacher, fn, hidden


@pytest.mark.parametrize("chunk", [None, 3, 4, 100])  # 3: slices of 3 + 3 + 3 + 1 positions
@pytest.mark.parametrize("hidden_requires_grad", [True, False])
def test_fused_head_loss_equals_the_plain_loss_and_its_gradients(chunk, hidden_requires_grad):
    embed, head, ids, teacher, fn, hidden = _head_case(hidden_requires_grad)
    weights = [0.3, 0.7]
    full = fn(head(hidden()), teacher, ids[:, 1:])
    (0.5 * (full * torch.tensor(weights)).sum()).backward()  # mix's weights times 1/accum
    expected = {n: p.grad.clone() for n, p in [("embed", embed.weight), ("bias", head.bias)]}
    embed.weight.grad = head.bias.grad = None
    params = [p for p in head.parameters() if p.requires_grad]
    fused = head_loss_sums(head, params, fn, weights, chunk, hidden(), teacher, ids[:, 1:])
    (0.5 * (fused * torch.tensor(weights)).sum()).backward()
    torch.testing.assert_close(fused, full.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(embed.weight.grad, expected["embed"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(head.bias.grad, expected["bias"], rtol=1e-5, atol=1e-7)


def test_fused_head_loss_without_gradients_gives_the_same_sums():
    embed, head, ids, teacher, fn, hidden = _head_case()
    full = fn(head(hidden()), teacher, ids[:, 1:])
    with torch.no_grad():
        fused = head_loss_sums(head, list(head.parameters()), fn, [0.3, 0.7], 3, hidden(), teacher, ids[:, 1:])
    torch.testing.assert_close(fused, full.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_closed_form_kd_without_gradients_gives_the_same_sums_and_no_gradient(temperature):
    from distill_lib.losses import forward_kd_sums, topk_kd_sums

    embed, head, ids, teacher, _, hidden = _head_case()
    z, y = head(hidden()).detach(), ids[:, 1:]
    values, top = teacher.topk(4, dim=-1)
    with torch.no_grad():  # an evaluation: only the sums, the [tokens, vocab] gradient is never built
        sums = forward_kd_sums(z, teacher, y, temperature, (0.5, 0.5))
        topk = topk_kd_sums(z, top, values, y, temperature, (0.5, 0.5))
    assert isinstance(sums, torch.Tensor) and isinstance(topk, torch.Tensor)
    torch.testing.assert_close(sums, forward_kd_sums(z, teacher, y, temperature, (0.5, 0.5))[0])
    torch.testing.assert_close(topk, topk_kd_sums(z, top, values, y, temperature, (0.5, 0.5))[0])
    torch.testing.assert_close(sums[1], token_divergence(z, teacher, temperature, "forward"), rtol=1e-5, atol=1e-6)


def test_fused_head_loss_refuses_a_backward_that_weighs_its_terms_otherwise():
    embed, head, ids, teacher, fn, hidden = _head_case()
    fused = head_loss_sums(head, list(head.parameters()), fn, [0.3, 0.7], 3, hidden(), teacher, ids[:, 1:])
    with pytest.raises(RuntimeError, match=r"must be weighed by \[0.3.*, 0.7.*\]"):
        fused[0].backward()


def test_an_unknown_divergence_is_an_input_error_naming_the_valid_ones():
    from distill_lib.config import ConfigError
    from distill_lib.losses import token_divergence

    logits = torch.zeros(2, 5)
    with pytest.raises(ConfigError, match=r"kd_divergence: unknown 'kl' \(valid: forward, reverse, jsd\)"):
        token_divergence(logits, logits, 1.0, "kl")


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.0, 1.0), (0.3, 4.0)])
def test_forward_kd_in_closed_form_equals_autograd_through_the_plain_losses(temperature, weights):
    from distill_lib.losses import forward_kd_sums

    embed, head, ids, teacher, _, hidden = _head_case()

    def plain(z, t, y):
        return torch.stack([token_cross_entropy(z, y), token_divergence(z, t, temperature, "forward")])

    full = plain(head(hidden()), teacher, ids[:, 1:])
    (full * torch.tensor(weights)).sum().backward()
    expected = embed.weight.grad.clone(), head.bias.grad.clone()
    embed.weight.grad = head.bias.grad = None
    fused = head_loss_sums(head, list(head.parameters()), lambda z, t, y: forward_kd_sums(z, t, y, temperature, weights),
                           list(weights), 4, hidden(), teacher, ids[:, 1:])
    (fused * torch.tensor(weights)).sum().backward()
    torch.testing.assert_close(fused, full.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(embed.weight.grad, expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head.bias.grad, expected[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.0, 1.0)])
def test_offline_topk_kd_in_closed_form_equals_autograd_through_the_plain_losses(temperature, weights):
    from distill_lib.losses import topk_kd_sums

    embed, head, ids, teacher, _, hidden = _head_case()
    values, top = teacher.topk(4, dim=-1)

    def plain(z, i, v, y):
        return torch.stack([token_cross_entropy(z, y), topk_forward_kl(z, i, v, temperature)])

    full = plain(head(hidden()), top, values, ids[:, 1:])
    (full * torch.tensor(weights)).sum().backward()
    expected = embed.weight.grad.clone(), head.bias.grad.clone()
    embed.weight.grad = head.bias.grad = None
    fused = head_loss_sums(head, list(head.parameters()),
                           lambda z, i, v, y: topk_kd_sums(z, i, v, y, temperature, weights),
                           list(weights), 3, hidden(), top, values, ids[:, 1:])
    (fused * torch.tensor(weights)).sum().backward()
    torch.testing.assert_close(fused, full.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(embed.weight.grad, expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head.bias.grad, expected[1], rtol=1e-5, atol=1e-6)


def test_fused_head_loss_refuses_a_head_that_computes_with_unlisted_trainable_tensors():
    # FSDP1 without use_orig_params: the head's weight is a view of a flat parameter it was not given
    flat = torch.nn.Parameter(torch.randn(78))
    weight = flat.view(13, 6)
    hidden = torch.randn(2, 10, 6, requires_grad=True)
    with pytest.raises(RuntimeError, match="not among its parameters"):
        head_loss_sums(lambda x: torch.nn.functional.linear(x, weight), [],
                       lambda z, y: token_cross_entropy(z, y)[None], [1.0], 4, hidden, torch.randint(0, 13, (2, 10)))


def test_fused_head_loss_backward_inside_bf16_autocast():
    # the training step's backward runs inside its autocast (precision bf16): the check that the terms
    # are weighed as declared must not compute in bf16 (it rounded 1/504 and refused the loss)
    embed, head, ids, teacher, fn, hidden = _head_case()
    weights = [0.3, 0.7]
    expected = head_loss_sums(head, list(head.parameters()), fn, weights, 3, hidden(), teacher, ids[:, 1:])
    (expected * torch.tensor(weights)).sum().div(504).backward()
    plain = head.bias.grad.clone()
    head.bias.grad = embed.weight.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = head_loss_sums(head, list(head.parameters()), fn, weights, 3, hidden(), teacher, ids[:, 1:])
        (fused.float() * torch.tensor(weights)).sum().div(504).backward()
    assert head.bias.grad is not None and torch.isfinite(head.bias.grad).all()
    torch.testing.assert_close(head.bias.grad, plain, rtol=0.05, atol=1e-3)  # bf16 matmuls in the head
