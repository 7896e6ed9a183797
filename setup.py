"""Which packages the distribution holds; everything else is declarative, in setup.cfg.

The server kits live once in the repository, in ``providers/`` (``providers/orchestra``: the preseed,
Cobbler snippets, WebDAV site config). A built distribution ships that directory as the package data
``ensemble_orchestra/_providers/``, where `ensemble_orchestra.kit.kit_dir` finds it in an installed
package; a checkout or an editable install finds ``providers/`` beside the package instead.

This file exists because the mapping needs the kit's directories in ``packages`` next to the
discovered Python packages, which setup.cfg's ``find:`` cannot express. Data directories are listed as
(namespace) packages, as setuptools asks, so that the build does not warn that they would be ignored.
"""

from setuptools import find_namespace_packages, find_packages, setup

KITS = "ensemble_orchestra._providers"

setup(
    packages=[
        *find_packages(include=["ensemble_orchestra", "ensemble_orchestra.*"]),
        KITS,
        *(f"{KITS}.{name}" for name in find_namespace_packages(where="providers")),
    ],
    package_dir={KITS: "providers"},
    package_data={KITS: ["**/*"]},
)
