import pytest

from rating_helpers import DEMO_DECK


@pytest.fixture
def demo_deck_text() -> str:
    return DEMO_DECK.read_text()
