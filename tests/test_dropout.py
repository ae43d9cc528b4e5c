"""Keyed dropout: its masks are the dropout the layers ask for (rate, independence), and depend on the key and the
row only."""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap

from eeg2image.models.dropout import KeyedDropout, keep_mask, keyed_dropout


@pytest.mark.parametrize("p", [0.25, 0.65, 0.85])
def test_masks_drop_at_the_rate_asked_with_no_pattern(p):
    keep = keep_mask(torch.Size((512, 25, 80)), torch.tensor(12345), 0, p).float()  # 1,024,000 elements
    assert abs(keep.mean().item() - (1 - p)) < 0.003  # sd of the mean ~ 0.0005
    flat = keep.view(512, -1)
    z = (flat - flat.mean()) / flat.std()
    lag = {  # correlation of an element with its neighbours along the row, the next row, and a far element
        "next element": (z[:, 1:] * z[:, :-1]).mean(),
        "next row": (z[1:] * z[:-1]).mean(),
        "filter stride": (z[:, 80:] * z[:, :-80]).mean(),
        "second next element": (z[:, 2:] * z[:, :-2]).mean(),
    }
    assert all(abs(v.item()) < 0.01 for v in lag.values()), lag
    other = keep_mask(torch.Size((512, 25, 80)), torch.tensor(12346), 0, p).float()  # the next layer key
    assert abs(((keep - keep.mean()) * (other - other.mean())).mean().item()) / keep.var().item() < 0.01


def test_a_row_keeps_its_mask_wherever_it_sits_and_under_vmap():
    shape = torch.Size((8, 3, 5))
    whole = keep_mask(shape, torch.tensor(7), 0, 0.5)
    assert torch.equal(keep_mask(torch.Size((3, 3, 5)), torch.tensor(7), 5, 0.5), whole[5:])
    keys = torch.tensor([7, 9])
    stacked = vmap(lambda k: keep_mask(shape, k, 0, 0.5))(keys)
    assert torch.equal(stacked[0], whole) and not torch.equal(stacked[1], whole)


def test_kept_elements_are_scaled_and_gradients_follow_the_mask():
    drop = KeyedDropout(0.65).train()
    x = torch.ones(64, 200, requires_grad=True)
    with keyed_dropout(torch.tensor(3)):
        y = drop(x)
    values = y.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.35)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x * m)/dx = m
    with keyed_dropout(torch.tensor(3)):
        assert torch.equal(KeyedDropout(1.0).train()(x), torch.zeros_like(x))
    assert torch.equal(drop.eval()(x), x)
