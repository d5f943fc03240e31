"""keymgr/wire.py writes what the generated classes write, and what it writes merges as intended."""

from __future__ import annotations

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3 import external_auth_pb2
from hypothesis import given
from hypothesis import strategies as st

from keymgr.wire import response_header

CheckResponse = external_auth_pb2.CheckResponse


def generated(name: str, value: str) -> bytes:
    option = HeaderValueOption(
        header=HeaderValue(key=name, value=value), append_action=HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
    )
    message = CheckResponse(ok_response=external_auth_pb2.OkHttpResponse(response_headers_to_add=[option]))
    encoded: bytes = message.SerializeToString()
    return encoded


# Up to a few hundred characters (lengths past one varint byte), any text the headers could hold.
text = st.text(max_size=300)


@given(text, text)
def test_a_header_is_encoded_as_the_generated_classes_encode_it(name: str, value: str) -> None:
    assert response_header(name, value) == generated(name, value)


def test_appended_headers_merge_into_the_cached_response() -> None:
    cached = CheckResponse(ok_response=external_auth_pb2.OkHttpResponse(headers_to_remove=["x-api-key"]))
    answer = CheckResponse.FromString(
        cached.SerializeToString() + response_header("x-ratelimit-remaining", "4") + response_header("b", "é")
    )
    assert list(answer.ok_response.headers_to_remove) == ["x-api-key"]
    assert [(o.header.key, o.header.value) for o in answer.ok_response.response_headers_to_add] == [
        ("x-ratelimit-remaining", "4"),
        ("b", "é"),
    ]
