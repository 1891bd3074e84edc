import pytest, torch
from torch.utils.data import DataLoader, TensorDataset
from miniai.data import DataLoaders


@pytest.fixture
def regression_dls():
    "A tiny linear regression problem: 64 points, batches of 16."
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([[1.], [-2.], [0.5]]) + 0.1
    ds = TensorDataset(x, y)
    return DataLoaders(DataLoader(ds, batch_size=16, shuffle=True), DataLoader(ds, batch_size=32))
