import pytest, torch
import torchvision.transforms as T
from miniai.augment import RandErase, shift_flip


def test_shift_flip_is_a_small_shift_and_maybe_a_flip():
    x = torch.rand(64, 1, 8, 8)
    y = shift_flip(x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    pad = torch.nn.functional.pad(x, (2,) * 4, value=x.min().item())
    moves = set()
    for i in range(len(x)):
        found = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)
                 if torch.equal(y[i], (lambda c: c.flip(-1) if f else c)(pad[i, :, dy:dy + 8, dx:dx + 8]))]
        assert found, f'item {i} is not its input shifted by at most 2 pixels and maybe flipped'
        moves.update(found)
    assert len({m[:2] for m in moves}) > 10 and {m[2] for m in moves} == {False, True}  # shifts and flips both vary


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_augmentation_keeps_shape_and_dtype(dtype):
    torch.manual_seed(0)
    x = torch.randn(16, 4, 32, 32).to(dtype)
    crop = T.RandomCrop(32, padding=4)
    xc = torch.stack([crop(xi) for xi in x])
    assert (xc.shape, xc.dtype) == (x.shape, dtype)
    xe = RandErase(p=1., max_frac=0.5)(x)
    assert (xe.shape, xe.dtype) == (x.shape, dtype)
    changed = (xe != x).flatten(2).any(1)  # (item, position): was this position erased
    assert changed.any(1).all()  # every item has a rectangle, of at most half of each side
    assert (changed.sum(1) <= 16 * 16).all()
    assert (RandErase(p=0.)(x) == x).all()


def test_rand_erase_several_rectangles():
    torch.manual_seed(0)
    x = torch.randn(400, 1, 8, 8)
    counts = {n: ((RandErase(p=1., max_frac=0.25, max_n=n)(x) != x)[:, 0].flatten(1).sum(1)) for n in (1, 4)}
    assert (counts[1] <= 2 * 2).all() and (counts[4] <= 4 * 2 * 2).all()  # rectangles of at most a quarter of each side
    assert counts[4].float().mean() > 1.5 * counts[1].float().mean()
    assert (counts[4] > 2 * 2).any()  # more than one rectangle's worth happens
