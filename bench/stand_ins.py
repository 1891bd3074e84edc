"""What the benches use where the Hub's SD VAE cannot be loaded."""
import torch
from diffusers import AutoencoderKL

UNTRAINED_VAE = 'untrained AutoencoderKL, channels (32, 64, 64, 64), 4 latent channels (weights do not change its cost)'

def untrained_vae():
    "An untrained `AutoencoderKL` shaped like SD's (RGB in, 4 levels, 4 latent channels, sides divided by 8), smaller."
    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=('DownEncoderBlock2D',) * 4,
                         up_block_types=('UpDecoderBlock2D',) * 4, block_out_channels=(32, 64, 64, 64), layers_per_block=1,
                         latent_channels=4, norm_num_groups=16).eval().requires_grad_(False)
