"""Install: `pip install -e .` (training), `pip install -e '.[test]'` (and the tests)."""

import setuptools

# Ranges are those tested on CPU (Python 3.11): the lower bound is the tested release,
# the upper bound the next major (or minor, for 0.x packages whose minors break APIs).
INSTALL_REQUIRES = [
    'jax>=0.10.2,<0.11',
    'flax>=0.12.8,<0.13',
    'optax>=0.2.8,<0.3',
    'orbax-checkpoint>=0.12.8,<0.13',
    'clu>=0.0.12,<0.1',
    'chex>=0.1.92,<0.2',
    'ml-collections>=1.1.0,<2',
    'absl-py>=2.5,<3',
    'numpy>=2.4,<3',
    'tensorflow-cpu>=2.21,<2.22',
    'tensorflow-datasets>=4.9.10,<5',
    'tensorboard>=2.21,<2.22',
    'protobuf>=6.33,<7',
    'importlib_resources>=7.1,<8',
    'pillow>=12.1,<14',              # apache-beam (extra 'beam') caps it below 13.
    'scikit-image>=0.26,<0.27',
    # Data preparation (vivi/prep/, data/): FFmpeg decoders, Haar cascades, progress bars.
    'av>=18.1,<19',
    'opencv-python-headless>=4.14,<5',
    'tqdm>=4.70,<5',
    # Evaluation (evaluate.py): the pictures (matplotlib) and their t-SNE (scikit-learn).
    'matplotlib>=3.11.2,<3.12',
    'scikit-learn>=1.9.1,<1.10',
]

# Apache Beam for data preparation at cluster scale (vivi/prep/beam_pipeline.py); this
# release accepts the protobuf 6 and numpy 2.4 that tensorflow 2.21 needs.
BEAM = ['apache-beam>=2.77,<2.78']

setuptools.setup(
    name='vivi',
    version='0.1.0',
    description='Learning image representations from video (VIVI and relatives) in JAX.',
    packages=setuptools.find_packages(include=['vivi', 'vivi.*']),
    python_requires='>=3.11',
    install_requires=INSTALL_REQUIRES,
    extras_require={
        'beam': BEAM,
        # Benchmarks only (benchmarks/): the PyTorch peer of the train-step comparison.
        'bench': ['torch==2.13.0'],
        'test': ['pytest>=9,<10', 'pytest-xdist>=3.8,<4'] + BEAM,
    },
)
