"""One error tree: every exception class the packages define derives from DetectorError and
stands in the tree drawn in ``detector/errors.py``'s docstring."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import detector.errors
from detector.errors import DetectorError

PACKAGES = ("detector", "producer", "training")
# Imported for their side effects or their TensorFlow import: nothing in them defines errors.
SKIP = {"detector.__main__", "producer.__main__", "training.__main__"}


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in PACKAGES:
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, f"{package}."):
            if info.name in SKIP:
                continue
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, BaseException)
                    and obj.__module__ == info.name
                ):
                    found[f"{info.name}.{name}"] = obj
    return found


CLASSES = _exception_classes()


def test_the_packages_define_errors() -> None:
    assert "detector.errors.PublishError" in CLASSES
    assert len(CLASSES) >= 15


@pytest.mark.parametrize("qualified", sorted(CLASSES))
def test_every_error_is_a_detector_error_drawn_in_the_tree(qualified: str) -> None:
    cls = CLASSES[qualified]
    assert issubclass(cls, DetectorError), f"{qualified} is outside the DetectorError tree"
    assert cls.__name__ in (detector.errors.__doc__ or ""), f"{qualified} is not in the tree"
