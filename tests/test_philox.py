"""The reference Philox stream (which every kernel reproduces) against Random123's known-answer vectors."""
import torch

from ddrm_fast.reference import philox4x32, philox_normal


def _words(c, k):
    t = [torch.tensor([v], dtype=torch.int64) for v in c + k]
    return [int(w) for w in philox4x32(*t)]


def test_known_answers():
    assert _words([0, 0, 0, 0], [0, 0]) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    ones = 0xFFFFFFFF
    assert _words([ones] * 4, [ones] * 2) == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]


def test_normals_depend_only_on_seed_offset_element():
    a = philox_normal(torch.tensor([3, 4]), 7, 1000)
    b = philox_normal(torch.tensor([4]), 7, 1000)
    assert torch.equal(a[1], b[0]) and not torch.equal(a[0], a[1])
    assert not torch.equal(philox_normal(torch.tensor([3]), 8, 1000)[0], a[0])
    big = philox_normal(torch.arange(8), 0, 50_000)
    assert abs(big.mean().item()) < 0.01 and abs(big.var().item() - 1) < 0.01
