
import pytest
import torch

from companion.text import (
    TINY_SHAKESPEARE_CHARS,
    CharTokenizer,
    RandomWindows,
    TinyShakespeareNotFoundError,
    bits_per_char,
    sequential_windows,
    tiny_shakespeare,
    train_val_split,
    unigram_entropy,
)


def test_tokenizer_round_trip_and_errors():
    tok = CharTokenizer.from_text("hello world")
    assert tok.vocab_size == 8
    ids = tok.encode("hold")
    assert ids.dtype == torch.long and tok.decode(ids) == "hold"
    assert tok.decode(ids.tolist()) == "hold"
    with pytest.raises(ValueError, match="not in the vocabulary: 'z'"):
        tok.encode("zero")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([8])
    with pytest.raises(ValueError, match="one sequence"):
        tok.decode(ids[None])


def test_offline_copy_is_found_and_checked():
    text = tiny_shakespeare()  # $COMPANION_DATA (the Makefile points it at ../shared/data)
    assert len(text) == TINY_SHAKESPEARE_CHARS
    assert CharTokenizer.from_text(text).vocab_size == 65


def test_missing_file_offline_says_where_it_looked(tmp_path):
    with pytest.raises(TinyShakespeareNotFoundError) as info:
        tiny_shakespeare(root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "tinyshakespeare" / "input.txt") in message and "COMPANION_DATA" in message


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(TinyShakespeareNotFoundError, match="download failed"):
        tiny_shakespeare(root=tmp_path)
    assert not any((tmp_path / "tinyshakespeare").iterdir())  # no partial file left


def test_wrong_checksum_is_refused(tmp_path):
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("not shakespeare")
    with pytest.raises(ValueError, match="SHA-256"):
        tiny_shakespeare(root=tmp_path)


def test_windows_are_shifted_by_one_and_seeded():
    ids = torch.arange(100)
    x, y = next(iter(RandomWindows(ids, 8, batch_size=4, seed=0)))
    assert x.shape == y.shape == (4, 8) and torch.equal(y, x + 1)
    again = next(iter(RandomWindows(ids, 8, batch_size=4, seed=0)))[0]
    assert torch.equal(x, again)
    batches = sequential_windows(ids, 8, batch_size=5)
    assert sum(len(bx) for bx, _ in batches) == 12 and torch.equal(batches[0][1], batches[0][0] + 1)


def test_split_entropy_and_bits():
    train, val = train_val_split(torch.arange(10))
    assert len(train) == 9 and len(val) == 1
    assert unigram_entropy(torch.tensor([0, 1, 0, 1])) == pytest.approx(0.6931, abs=1e-4)
    assert bits_per_char(0.6931471805599453) == pytest.approx(1.0)
