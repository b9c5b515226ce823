from __future__ import annotations

import pytest

from sessions import services
from sessions.models import Session


@pytest.mark.django_db
def test_it_appends_and_counts():
    result = services.messages_append(
        key="k", messages=[{"role": "user", "content": "hi"}], session={"agent": "a"}
    )
    assert result.appended == 1
    assert Session.objects.get(key="k").message_count == 1
