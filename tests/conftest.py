"""Fixtures shared by several test modules."""

from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def one_thread():
    """Small batches on a shared CPU: more threads only wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def astronaut(studio):
    """The astronaut photo's face, aligned and encoded by the module's ``studio`` fixture."""
    session = studio.new_session()
    studio.open_photo(session, DATA / "faces" / "astronaut.png")
    studio.align(session, 0)
    studio.encode(session)
    return session
