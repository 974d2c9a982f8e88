"""The client-library patches are where the map says, installed by the worker, and pinned to the versions they
were written for: an upgrade fails here first, so each patch is re-checked against the new internals."""

from __future__ import annotations

import importlib.metadata
import inspect

import pytest

import streams.compat as compat
from streams.runtime import app as runtime_app


@pytest.mark.parametrize("dist,version", sorted(compat.PINNED.items()))
def test_installed_versions_are_the_pinned_ones(dist, version):
    assert importlib.metadata.version(dist) == version, (
        f"{dist} is {importlib.metadata.version(dist)}, the patches in streams/compat were written for {version}: "
        "re-check each one (its upstream report and test are listed in streams.compat.PATCHES), then update PINNED")


def test_every_patch_has_its_defect_upstream_report_and_test():
    assert len({p.name for p in compat.PATCHES}) == len(compat.PATCHES)
    for patch in compat.PATCHES:
        assert callable(getattr(compat, patch.name, None)), patch.name
        assert patch.library in compat.PINNED, patch
        assert patch.defect and patch.upstream and patch.test.startswith("tests/"), patch


def test_the_worker_installs_every_listed_patch():
    installed = inspect.getsource(compat.install_patches)
    for patch in compat.PATCHES:
        assert f"{patch.name}(" in installed, f"{patch.name} is listed but install_patches does not call it"
    assert "install_patches(" in inspect.getsource(runtime_app.build_stream_app)
