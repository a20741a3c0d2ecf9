"""deft-jax: DEFT-LLM micro-expression recognition in JAX/Flax."""

import setuptools

setuptools.setup(
    name="deft-jax",
    version="0.1.0",
    description="Disentangled expert feature tuning of LLMs for micro-expression recognition, in JAX/Flax.",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["deft_jax", "deft_jax.*", "data_builders", "data_builders.*", "configs"]),
    include_package_data=True,
    install_requires=[
        "jax>=0.7",
        "flax>=0.11",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11",
        "transformers>=4.50",
        "tensorflow-datasets>=4.9.9",
        "array_record>=0.8",
        "etils[epath,epy]",
        "importlib_resources",
        "dm-tree",
        "ml-collections>=1.0",
        "absl-py",
        "opencv-python>=4.8,<5",  # OpenCV 5 dropped the Haar cascades used for face crops
        "grain>=0.2.10",
        "safetensors",
        "tokenizers",
        "tqdm",
        "matplotlib",
        "tensorboardX",
        "openpyxl",  # the MER annotation spreadsheets
        "scipy",
        "numpy",
        "dlib-bin",  # face detection and 68 landmarks (predict, builders' alignment); cp311 wheels
        "face_recognition_models==0.3.0",  # the 68-point model (iBUG 300-W data: non-commercial)
    ],
    extras_require={
        "test": [
            "pytest",
            "pytest-xdist",  # pytest.ini runs the suite on every core (at most 4 workers)
            "torch==2.13.0",
            "scikit-image",
            "scikit-learn",
            "peft",
            "gguf",  # transformers' GGUF reader (deft-jax convert-llm; tests convert SmolLM2)
        ],
    },
    entry_points={"console_scripts": ["deft-jax=deft_jax.cli:main"]},
)
