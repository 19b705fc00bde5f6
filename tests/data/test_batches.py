"""Mini-batch index iteration and training-subset selection (exercise 15.6)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.data import Dataset, example_range, first_n, iterate_minibatches, num_batches, parse_subset


def test_in_order() -> None:
    batches = list(iterate_minibatches(10, 4))
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(b.dtype == np.int64 for b in batches)
    assert [b.tolist() for b in iterate_minibatches(10, 4, drop_last=True)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert num_batches(10, 4) == 3 and num_batches(10, 4, drop_last=True) == 2 and num_batches(8, 4) == 2
    assert list(iterate_minibatches(0, 3)) == []


def test_shuffled_each_epoch_reproducibly() -> None:
    rng = np.random.default_rng(0)
    e1 = np.concatenate(list(iterate_minibatches(100, 7, rng)))
    e2 = np.concatenate(list(iterate_minibatches(100, 7, rng)))
    assert sorted(e1.tolist()) == list(range(100)) == sorted(e2.tolist())
    assert not np.array_equal(e1, e2) and not np.array_equal(e1, np.arange(100))
    again = np.random.default_rng(0)
    np.testing.assert_array_equal(np.concatenate(list(iterate_minibatches(100, 7, again))), e1)
    np.testing.assert_array_equal(e1, np.random.default_rng(0).permutation(100))  # the documented order


def test_bad_arguments_fail_at_call() -> None:
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        iterate_minibatches(10, 0)
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        iterate_minibatches(-1, 2)


def test_subsets() -> None:
    np.testing.assert_array_equal(parse_subset(10000, 60000), np.arange(10000))
    np.testing.assert_array_equal(parse_subset("500", 60000), np.arange(500))
    idx = parse_subset("10001-20000", 60000)  # exercise 15.6(h), i = 2
    assert idx[0] == 10000 and idx[-1] == 19999 and len(idx) == 10000
    np.testing.assert_array_equal(parse_subset("50001-60000", 60000), np.arange(50000, 60000))
    np.testing.assert_array_equal(parse_subset(None, 5), np.arange(5))
    np.testing.assert_array_equal(parse_subset("all", 5), np.arange(5))
    np.testing.assert_array_equal(example_range(1, 1, 5), [0])
    np.testing.assert_array_equal(first_n(5, 5), np.arange(5))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (70000, r"cannot take the first 70000 examples of 60000"),
        ("0", r"cannot take the first 0 examples"),
        ("50001-70000", r"range 50001-70000 \(1-based, inclusive\) is invalid for 60000 examples"),
        ("0-10", r"range 0-10"),
        ("20-10", r"range 20-10"),
        ("ten", r"subset 'ten' not understood"),
        ("1-2-3", r"not understood"),
        (True, r"not understood"),
    ],
)
def test_subset_errors(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_subset(spec, 60000)  # type: ignore[arg-type]  # a wrong argument on purpose


def test_dataset_subset() -> None:
    ds = Dataset(np.arange(5 * 4, dtype=np.uint8).reshape(5, 2, 2, 1), np.array([0, 1, 0, 1, 1]), ("a", "b"), "t")
    sub = ds.subset(parse_subset("2-3", len(ds)))
    assert len(sub) == 2 and sub.labels.tolist() == [1, 0] and sub.classes == ("a", "b")
    np.testing.assert_array_equal(sub.images, ds.images[1:3])
    assert ds.class_counts().tolist() == [2, 3] and ds.image_shape == (2, 2, 1) and ds.num_classes == 2
