import torch
from miniai.core import set_seed


def test_set_seed_leaves_the_deterministic_setting_alone():
    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        set_seed(0)
        assert torch.are_deterministic_algorithms_enabled()  # the caller's choice survives
        torch.use_deterministic_algorithms(False)
        set_seed(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
    finally: torch.use_deterministic_algorithms(before)


def test_set_seed_repeats_draws():
    set_seed(3); a = torch.rand(4)
    set_seed(3); assert torch.equal(a, torch.rand(4))
