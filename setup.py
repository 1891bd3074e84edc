"Reads settings.ini (nbdev 2) and installs miniai with its data and the dev extras."
from configparser import ConfigParser
import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']
licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['Planning', 'Pre-Alpha', 'Alpha', 'Beta', 'Production/Stable', 'Mature', 'Inactive']
lic = licenses[cfg['license']]

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], description=cfg['description'],
    long_description=open('README.md', encoding='utf-8').read(), long_description_content_type='text/markdown',
    author=cfg['author'], author_email=cfg['author_email'], url=cfg['git_url'],
    license=lic[0], keywords=cfg['keywords'].split(),
    classifiers=[f'Development Status :: {cfg["status"]} - {statuses[int(cfg["status"])]}',
                 f'Intended Audience :: {cfg["audience"]}', f'License :: {lic[1]}',
                 f'Natural Language :: {cfg["language"]}', 'Programming Language :: Python :: 3'],
    python_requires=f'>={cfg["min_python"]}',
    packages=setuptools.find_packages(include=['miniai', 'miniai.*']),
    package_data={'miniai': ['assets/*/*']}, include_package_data=True,
    install_requires=cfg['requirements'].split(),
    extras_require={'dev': cfg['dev_requirements'].split()},
    entry_points={'console_scripts': cfg.get('console_scripts', '').split(),
                  'nbdev': [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d']},
    zip_safe=False)
