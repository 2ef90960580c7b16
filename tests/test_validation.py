"""Input limits: each error names the value and the limit."""

import pytest

from composer.types import ComposeRequest, GenerationConfig, InputError
from composer.validation import CheckedRequest, check_request


@pytest.mark.parametrize("changes, words", [
    ({"instruction": ""}, "empty"),
    ({"instruction": "   \n "}, "empty"),
    ({"instruction": "x" * 8001}, "8,001 characters; the limit is 8,000"),
    ({"instruction": 42}, "must be text"),
    ({"language": "fr"}, "'fr' is not supported"),
    ({"target_words": 10}, "target words is 10; it must be between 50 and 10000"),
    ({"target_words": 20_000}, "between 50 and 10000"),
    ({"target_words": "800"}, "whole number"),
    ({"images": 0}, "images is 0; it must be between 1 and 15"),
    ({"images": 16}, "between 1 and 15"),
    ({"images": 5, "target_words": 100}, "5 images is more than an article of 100 words"),
    ({"selection": "random"}, "selection 'random'"),
    ({"material": "m" * 40_001}, "limit is 40,000"),
    ({"generation": GenerationConfig(num_beams=9)}, "beams is 9; it must be between 1 and 6"),
    ({"generation": GenerationConfig(max_new_tokens=5000)}, "max tokens is 5000"),
    ({"generation": GenerationConfig(top_p=0)}, "top-p is 0"),
    ({"generation": GenerationConfig(temperature=0)}, "temperature is 0"),
])
def test_bad_requests_name_value_and_limit(changes, words):
    request = ComposeRequest(**{"instruction": "Tea", **changes})
    with pytest.raises(InputError, match=None) as error:
        check_request(request)
    assert words in str(error.value)


def test_valid_request_passes_and_text_only_ignores_image_count():
    check_request(ComposeRequest("Tea", images=3))
    check_request(ComposeRequest("Tea", images=99, text_only=True))
    check_request(ComposeRequest("茶的历史", language="zh"))


def test_a_checked_request_is_read_only_and_not_checked_again():
    request = ComposeRequest("Tea", images=3, reference_images=["a.png"])
    checked = check_request(request)
    assert isinstance(checked, CheckedRequest) and check_request(checked) is checked
    assert checked.options() == request.options()
    request.reference_images.append("b.png")  # the checked copy keeps what was checked
    assert checked.reference_images == ["a.png"]
    with pytest.raises(AttributeError, match="read-only"):
        checked.target_words = 5
