"Names that moved to the module that holds their idea still import from their old home, with a warning naming the new one."
import importlib, pytest

MOVED = {'miniai.learner': {'conv': 'miniai.networks', 'cnn_classifier': 'miniai.networks'},
         'miniai.fid': {'ResBlock': 'miniai.networks'},
         'miniai.latents': {**dict.fromkeys(('IMAGE_EXTS', 'list_images', 'ImageError', 'load_image', 'ImageFolder'),
                                            'miniai.files'), 'SD_VAE': 'miniai.autoencoder', 'load_vae': 'miniai.autoencoder'},
         'miniai.latent_classifier': {'RandErase': 'miniai.augment', 'PreActBlock': 'miniai.networks',
                                      'LatentResNet': 'miniai.networks'}}


@pytest.mark.parametrize('old,name,new', [(o, n, m) for o, d in MOVED.items() for n, m in d.items()])
def test_old_import_warns_and_gives_the_same_object(old, name, new):
    with pytest.warns(DeprecationWarning, match=f'{old}.{name} has moved to {new}.{name}'):
        obj = getattr(importlib.import_module(old), name)
    assert obj is getattr(importlib.import_module(new), name)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="'miniai.learner' has no attribute 'nothing'"):
        importlib.import_module('miniai.learner').nothing
