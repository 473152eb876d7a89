"""Batches from the cache: order, content, and the background prefetch."""

import threading

import numpy as np
import pytest

from fext.feed import epoch_order, iter_batches, prefetch
from fext.images import to_model_input


def _cache(tmp_path, n=37, size=8):
    path = tmp_path / "cache.u8"
    cache = np.memmap(path, np.uint8, "w+", shape=(n, size, size, 3))
    cache[:] = np.random.default_rng(0).integers(0, 256, cache.shape, np.uint8)
    cache.flush()
    return np.memmap(path, np.uint8, "r", shape=(n, size, size, 3))


def _prefetch_threads():
    return {t for t in threading.enumerate() if t.name == "fext-prefetch"}


def test_prefetched_batches_are_the_same_batches_in_the_same_order(tmp_path):
    cache = _cache(tmp_path)
    order = epoch_order(np.arange(len(cache)), seed=3, epoch=1)
    plain = list(iter_batches(cache, order, 8))
    fetched = list(prefetch(iter_batches(cache, order, 8)))
    assert [s for s, _ in fetched] == [s for s, _ in plain] == [0, 8, 16, 24, 32]
    for (_, a), (_, b) in zip(plain, fetched):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fetched[1][1][0], to_model_input(cache[order[8]]))


def test_next_batch_is_prepared_while_the_current_one_is_used():
    second_ready = threading.Event()

    def items():
        yield 1
        second_ready.set()  # reached only if the producer runs ahead of the consumer
        yield 2

    it = prefetch(items())
    assert next(it) == 1
    assert second_ready.wait(timeout=5), "the second item was not prepared in the background"
    assert list(it) == [2]


def test_an_error_while_preparing_reaches_the_consumer_after_the_good_batches():
    def items():
        yield "a"
        raise OSError("disk went away")

    got = []
    with pytest.raises(OSError, match="disk went away"):
        for item in prefetch(items()):
            got.append(item)
    assert got == ["a"]


def test_leaving_the_loop_early_stops_the_background_thread():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    before = _prefetch_threads()
    it = prefetch(endless(), depth=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    ours = _prefetch_threads() - before
    assert len(ours) == 1
    it.close()
    assert not ours.pop().is_alive()


def test_batches_made_by_several_threads_are_the_same_batches_in_the_same_order(tmp_path):
    """What feeds an accelerator (fext.feed.feed_threads) changes nothing: work on later
    batches that finishes first still waits its turn."""
    import time

    from fext.feed import batch_rows, feed_threads, load_rows

    cache = _cache(tmp_path)
    order = epoch_order(np.arange(len(cache)), seed=3, epoch=1)

    def slow_first(job):
        start, rows = job
        if start == 0:
            time.sleep(0.2)  # the first batch finishes last
        return start, load_rows(cache, rows)

    plain = list(iter_batches(cache, order, 8))
    fetched = list(prefetch(batch_rows(order, 8), work=slow_first, threads=4))
    assert [s for s, _ in fetched] == [s for s, _ in plain]
    for (_, a), (_, b) in zip(plain, fetched):
        np.testing.assert_array_equal(a, b)
    assert feed_threads(False) == 1 < feed_threads(True)


def test_several_threads_hand_on_an_error_and_stop_when_the_loop_is_left():
    def work(i):
        if i == 3:
            raise OSError("disk went away")
        return i

    got = []
    with pytest.raises(OSError, match="disk went away"):
        for item in prefetch(range(10), work=work, threads=3):
            got.append(item)
    assert got == [0, 1, 2]
    made = []
    it = prefetch(iter(range(10 ** 9)), work=lambda i: made.append(i) or i, threads=3, depth=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    assert len(made) <= 3 + 3 + 2  # what was taken, and no more than was made ahead
