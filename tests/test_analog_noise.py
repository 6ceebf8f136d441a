"""The Gaussian generator of the analog simulator (spikecim.analog.noise): its raw
Philox4x32-10 blocks against the Random123 known-answer vectors and a Philox4x32-10 written
here from the paper's round function, its float64 normals against Box-Muller computed here
from those words, its float32 normals against the table inverse CDF re-implemented here in
numpy (and against scipy's norm.ppf within the interpolation bound), its statistics against
the normal distribution (scipy.stats.norm), and every fused pass against its formula
evaluated by torch on the same normals."""

from __future__ import annotations

import ctypes
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import special, stats

from spikecim.analog import noise
from spikecim.timing import torch_threads

pytestmark = pytest.mark.skipif(
    not noise.available(torch.float32), reason="no C compiler: the Gaussian kernel is not built"
)

N_STATS = 1 << 21  # 2.1 M samples for the moment and distribution tests
SEED = 0x5EED_1234_ABCD_0042


M0, M1 = 0xD2511F53, 0xCD9E8D57  # Salmon et al., SC 2011, Table 2 (Philox4x32)
W0, W1 = 0x9E3779B9, 0xBB67AE85  # the Weyl key increments
MASK32 = 0xFFFFFFFF


def philox4x32_10(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    """One Philox4x32-10 block, the paper's round: (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0,
    lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0)), the key bumped by (W0, W1) between rounds."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & MASK32
    return c0, c1, c2, c3


def stream_words(seed: int, first_block: int, blocks: int) -> np.ndarray:
    """Words of the stream of ``seed``: key (seed mod 2^32, seed / 2^32), block b at counter
    (b mod 2^32, b / 2^32, 0, 0); [blocks, 4]."""
    key = (seed & MASK32, seed >> 32)
    rows = [philox4x32_10((b & MASK32, b >> 32, 0, 0), key) for b in range(first_block, first_block + blocks)]
    return np.array(rows, dtype=np.uint64)


def box_muller(words: np.ndarray) -> np.ndarray:
    """Normals 4b .. 4b+3 from block b: (w0, w1) then (w2, w3), u1 = (w0 + 1)/2^32,
    u2 = w1/2^32, R = sqrt(-2 ln u1), (R cos 2 pi u2, R sin 2 pi u2)."""
    pairs = words.reshape(-1, 2).astype(np.float64)
    r = np.sqrt(-2.0 * np.log((pairs[:, 0] + 1.0) / 2.0**32))
    t = 2.0 * np.pi * pairs[:, 1] / 2.0**32
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1).reshape(-1)


@pytest.fixture(scope="module")
def z64() -> np.ndarray:
    return noise.standard_normal((N_STATS,), SEED, torch.float64).numpy()


@pytest.fixture(scope="module")
def z32() -> np.ndarray:
    return noise.standard_normal((N_STATS,), SEED, torch.float32).numpy().astype(np.float64)


# -- the raw stream ------------------------------------------------------------------------


# Random123 kat_vectors, "philox4x32 10" lines: counter, key, expected block
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK32,) * 4, (MASK32, MASK32), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


ISAS = ["scalar", "avx2", "avx512"]


def raw_or_skip(key, counter, blocks, isa):
    try:
        return noise.philox_raw(key, counter, blocks, isa)
    except RuntimeError:
        pytest.skip(f"this CPU has no {isa}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(("counter", "key", "expected"), KAT, ids=["zeros", "ones", "pi"])
def test_philox4x32_10_matches_the_random123_known_answers(counter, key, expected, isa):
    # 32 blocks from the vector's counter: the first goes through the vector loop
    assert raw_or_skip(key, counter, 32, isa)[0] == expected
    assert philox4x32_10(counter, key) == expected  # the reference of the next test


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(
    ("counter", "key"),
    [((MASK32 - 40, 7, 0, 0), (0x1234_5678, 0x9ABC_DEF0)), ((3, 0, 0xDEAD_BEEF, 1), (MASK32, 0))],
    ids=["carry-into-c1", "c2-c3"],
)
def test_philox_blocks_equal_the_papers_round_function_written_in_python(counter, key, isa):
    blocks = 75  # 300 words: whole vector steps of 8 or 16 blocks and a tail one at a time
    ours = raw_or_skip(key, counter, blocks, isa)
    start = counter[0] | counter[1] << 32
    for j, block in enumerate(ours):
        b = (start + j) & (2**64 - 1)
        assert block == philox4x32_10((b & MASK32, b >> 32, counter[2], counter[3]), key), j


def test_float64_normals_are_box_muller_of_the_python_philox_stream():
    n = 4003  # not a multiple of 4: the last block's last normal is not used
    z = noise.standard_normal((n,), SEED, torch.float64).numpy()
    ref = box_muller(stream_words(SEED, 0, (n + 3) // 4))[:n]
    np.testing.assert_allclose(z, ref, rtol=1e-13, atol=1e-13)  # libm against numpy: a few ulp


ICDF_K = 7  # mantissa bits of u's float that pick the bin inside its binade


def icdf_parts(words: np.ndarray):
    """u of each word and its bin: v = 2 (w mod 2^31) + 1 rounded to float32 f, u = f 2^-33;
    the bin's left edge u0 = 2^(e - 33) (1 + j / 2^K) (e: f's exponent, j: its top K mantissa
    bits), width h = 2^(e - 33) / 2^K, and t = the remaining mantissa bits / 2^(23 - K)."""
    v = ((words.astype(np.uint64) << 1) | 1) & MASK32
    f = v.astype(np.uint32).astype(np.float32)  # one IEEE rounding, as the kernel
    bits = f.view(np.uint32).astype(np.int64)
    e = (bits >> 23) - 127
    j = (bits >> (23 - ICDF_K)) & ((1 << ICDF_K) - 1)
    u0 = np.ldexp(1.0 + j / 2**ICDF_K, e - 33)
    h = np.ldexp(1.0, e - 33 - ICDF_K)
    t = (bits & ((1 << (23 - ICDF_K)) - 1)).astype(np.float32) * np.float32(2.0 ** -(23 - ICDF_K))
    return f.astype(np.float64) * 2.0**-33, u0, h, t


def icdf_numpy(words: np.ndarray) -> np.ndarray:
    """The float32 transform from raw words: |z| = -Phi^-1 at the bin's two edges (scipy's
    ndtri, rounded to float32) interpolated linearly in float32 arithmetic with t, negated
    when the word's top bit is set."""
    _, u0, h, t = icdf_parts(words)
    lo = (-special.ndtri(u0)).astype(np.float32)
    hi = (-special.ndtri(np.minimum(u0 + h, 0.5))).astype(np.float32)
    a = lo + (hi - lo) * t  # float32 operations, one rounding each
    return np.where(words >> 31 == 1, -a, a)


def awkward_words() -> np.ndarray:
    """Words at the ends of u's range and around every binade edge of v = 2w + 1, both signs,
    and random ones: a multiple of 4 (whole blocks)."""
    edges = [(1 << e) - 1 for e in range(32)] + [1 << e for e in range(31)]
    edges += [(1 << e) + 1 for e in range(31)] + [0x7FFFFFFE, 0x7FFFFFFF]
    ws = np.array(edges, dtype=np.uint64) >> 1
    rng = np.random.default_rng(8)
    words = np.concatenate([ws, ws | 0x8000_0000, rng.integers(0, 2**32, size=1 << 18, dtype=np.uint64)])
    return words[: len(words) // 4 * 4]


def test_float32_normals_are_the_table_inverse_cdf_of_the_python_philox_stream():
    n = 4003  # not a multiple of 4: element i is the normal of word i of the stream
    z = noise.standard_normal((n,), SEED, torch.float32).numpy()
    words = stream_words(SEED, 0, (n + 3) // 4).reshape(-1)[:n]
    ref = icdf_numpy(words)
    # the kernel's table comes from its own double-precision quantile: an edge may round to
    # the neighbouring float; two ulp of the result cover that
    assert np.all(np.abs(z - ref) <= 2 * np.spacing(np.abs(ref))), np.abs(z - ref).max()


def test_float32_normal_i_takes_its_sign_from_word_i_and_shrinks_with_its_low_31_bits():
    n = 1 << 14
    z = noise.standard_normal((n,), SEED ^ 3, torch.float32).numpy()
    words = stream_words(SEED ^ 3, 0, n // 4).reshape(-1)
    assert np.array_equal(z < 0, (words >> 31) == 1)
    order = np.argsort(words & 0x7FFF_FFFF, kind="stable")
    assert np.all(np.diff(np.abs(z[order])) <= 0)  # u grows with the low bits, |z| falls


def test_float32_transform_is_within_the_interpolation_bound_of_scipy_ppf():
    """|z - (-Phi^-1(u))| on the kernel's own u (f 2^-33, f the float32 of 2w + 1) is at most
    the linear-interpolation remainder h^2/8 max|g''| over the bin, g = Phi^-1, g''(u) =
    z / phi(z)^2 (|g''| falls from the bin's left edge u0 towards 1/2, so max|g''| is at u0),
    plus float32 rounding: two table entries, the subtraction, product and sum, each half an
    ulp of a value at most |z(u0)|, so 3 ulp of |z(u0)| in all."""
    words = awkward_words()
    z = noise.icdf_raw(words.tolist()).numpy().astype(np.float64)
    u, u0, h, _ = icdf_parts(words)
    exact = np.where(words >> 31 == 1, 1.0, -1.0) * special.ndtri(u)
    z0 = -special.ndtri(u0)
    g2 = z0 / stats.norm.pdf(z0) ** 2
    bound = h**2 / 8 * g2 + 3 * 2.0**-24 * np.maximum(z0, 2.0**-126)
    err = np.abs(z - exact)
    assert np.all(err <= bound), (err / bound).max()
    assert err.max() < 4e-6  # K = 7: the remainder peaks near |z| = 1.15 at 3.3e-6


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_float32_transform_has_the_same_bits_on_every_vector_loop(isa):
    words = awkward_words().tolist()
    try:
        vec = noise.icdf_raw(words, isa)
    except RuntimeError:
        pytest.skip(f"this CPU has no {isa}")
    assert torch.equal(vec.view(torch.int32), noise.icdf_raw(words, "scalar").view(torch.int32))


def test_normals_of_a_range_starting_inside_a_block_are_the_streams():
    # differential_read's G- half starts at element n: n = 1001 starts inside block 250
    n = 1001
    g = torch.zeros(2, n, dtype=torch.float64)
    std = torch.ones(2, n, dtype=torch.float64)
    diff = noise.differential_read(g, std, seed=SEED).numpy()
    z = box_muller(stream_words(SEED, 0, (2 * n + 3) // 4))[: 2 * n]
    np.testing.assert_allclose(diff, np.maximum(z[:n], 0) - np.maximum(z[n:], 0), rtol=1e-13, atol=1e-13)


def test_float32_normals_have_the_same_bits_with_and_without_the_vector_clones():
    # the library built with only the default target (no AVX2/AVX-512 loops) against the
    # one noise uses: same IEEE operations, no contraction, so the same bits
    from spikecim.nn.kernels import cbuild

    flags = [*cbuild.FLAGS, "-DREAL=float", "-DNO_CLONES"]
    lib = ctypes.CDLL(str(cbuild.build(noise._SOURCE, "normal_cpu_float_noclones", flags)))
    _, Args = noise._library(torch.float32)
    n = 50_001
    plain = torch.empty(n)
    args = Args(n=n, seed=SEED, op=0, alpha=0.0, floor=0.0, out=plain.data_ptr(), g=None, std=None)
    lib.noise_run(ctypes.byref(args), 1)
    assert torch.equal(plain, noise.standard_normal((n,), SEED))


# -- statistics ----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["z64", "z32"])
def test_moments_are_those_of_the_standard_normal_within_5_sigma(which, request):
    z = request.getfixturevalue(which)
    n = len(z)
    # sampling standard errors of mean, variance, skewness and kurtosis for N(0, 1)
    assert abs(z.mean()) < 5 * math.sqrt(1 / n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / n)  # excess kurtosis


@pytest.mark.parametrize("which", ["z64", "z32"])
def test_kolmogorov_smirnov_against_scipy_norm_accepts(which, request):
    z = request.getfixturevalue(which)
    assert stats.kstest(z, stats.norm.cdf).pvalue > 1e-3


def test_tail_frequency_beyond_4_sigma_matches_the_normal(z32):
    n = len(z32)
    p = 2 * stats.norm.sf(4.0)  # 6.3e-5
    count = int((np.abs(z32) > 4).sum())
    assert abs(count - n * p) < 5 * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("which", ["z64", "z32"])
def test_lag_one_and_neighbour_pair_correlations_vanish(which, request):
    z = request.getfixturevalue(which)
    n = len(z)
    # float64: elements 2m, 2m+1 are one Box-Muller pair; float32: one word each
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / math.sqrt(n)  # within and across pairs
    assert abs(np.corrcoef(z[1:-1:2], z[2::2])[0, 1]) < 5 / math.sqrt(n // 2)  # across pairs
    # squares of one pair (a Box-Muller pair shares R) must be uncorrelated too
    assert abs(np.corrcoef(z[0::2] ** 2, z[1::2] ** 2)[0, 1]) < 5 / math.sqrt(n // 2)


def test_draws_across_thread_chunk_boundaries_are_uncorrelated():
    # chunks of 4096 elements: pairs of elements on either side of each boundary
    n_chunks = 512
    z = noise.standard_normal((n_chunks * 4096,), SEED ^ 7).numpy().astype(np.float64)
    ends = np.arange(1, n_chunks) * 4096
    for lag in (1, 2, 3):
        a, b = z[ends - lag], z[ends + lag - 1]
        assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(len(ends))
    # and between whole consecutive chunks
    chunks = z.reshape(n_chunks, 4096)
    assert abs(np.corrcoef(chunks[:-1].ravel(), chunks[1:].ravel())[0, 1]) < 5 / math.sqrt(chunks[1:].size)


def test_two_calls_from_the_global_generator_are_independent():
    torch.manual_seed(3)
    a = noise.normal_like(torch.empty(1 << 18)).double().numpy()
    b = noise.normal_like(torch.empty(1 << 18)).double().numpy()
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(len(a))
    assert not np.array_equal(a, b)


def test_same_global_seed_gives_the_same_draws():
    torch.manual_seed(11)
    a = noise.normal_like(torch.empty(1000))
    torch.manual_seed(11)
    b = noise.normal_like(torch.empty(1000))
    assert torch.equal(a, b)


def test_explicit_generator_keys_the_draw_and_leaves_the_global_one_alone():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    g1 = torch.Generator().manual_seed(9)
    g2 = torch.Generator().manual_seed(9)
    a = noise.normal_like(torch.empty(300), generator=g1)
    b = noise.normal_like(torch.empty(300), generator=g2)
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), before)


def test_draws_do_not_depend_on_the_thread_count():
    n = 3 * (1 << 17) + 5  # above the parallel threshold, not a multiple of the chunk
    g = torch.rand(2, n)
    std = torch.rand(2, n) * 0.3
    out = {}
    for t in (1, 2, 3):
        with torch_threads(t):
            out[t] = (noise.standard_normal((n,), SEED), noise.differential_read(g, std, seed=SEED))
    for t in (2, 3):
        assert torch.equal(out[t][0], out[1][0])
        assert torch.equal(out[t][1], out[1][1])


# -- fused passes against their formulas on the same normals -------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noisy_read_is_max_of_g_plus_std_times_z_and_zero(dtype):
    g = torch.rand(3, 1001, dtype=dtype) - 0.1
    std = torch.rand(3, 1001, dtype=dtype) * 0.5
    z = noise.standard_normal(g.shape, SEED, dtype)
    expected = torch.clamp(z * std + g, min=0.0)
    assert torch.equal(noise.noisy_read(g, std, seed=SEED), expected)
    out = g.clone()  # in place over g
    assert torch.equal(noise.noisy_read(out, std, out=out, seed=SEED), expected)


def test_fused_passes_propagate_nan_as_torch_clamp_does():
    g = torch.tensor([[0.5, float("nan"), 0.2], [0.1, 0.3, float("nan")]])
    std = torch.full_like(g, 0.1)
    read = noise.noisy_read(g, std, seed=SEED)
    assert torch.equal(torch.isnan(read), torch.isnan(g))
    diff = noise.differential_read(g, std, seed=SEED)
    assert torch.isnan(diff).tolist() == [False, True, True]
    assert torch.isnan(
        noise.write_noise(torch.tensor([float("nan"), 0.5]), 0.1, 0.0, seed=SEED)
    ).tolist() == [
        True,
        False,
    ]
    assert noise.standard_normal((0,), SEED).shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [4096, 1001])  # odd n: the G- half starts inside a word
def test_differential_read_is_the_difference_of_two_clipped_reads(dtype, n):
    g = torch.rand(2, n, dtype=dtype)
    std = torch.rand(2, n, dtype=dtype) * 0.5
    z = noise.standard_normal(g.shape, SEED, dtype)
    v = torch.clamp(z * std + g, min=0.0)
    assert torch.equal(noise.differential_read(g, std, seed=SEED), v[0] - v[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_add_normal_adds_alpha_times_z(dtype):
    y = torch.randn(5, 777, dtype=dtype)
    z = noise.standard_normal(y.shape, SEED, dtype)
    expected = y + 0.37 * z
    assert torch.equal(noise.add_normal_(y.clone(), 0.37, seed=SEED), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_write_noise_is_u_plus_sqrt_u_scale_z_clipped_at_the_floor(dtype):
    u = torch.rand(4, 999, dtype=dtype)
    z = noise.standard_normal(u.shape, SEED, dtype)
    sqrt_u = torch.from_numpy(np.sqrt(u.numpy()))  # IEEE sqrt (torch's float32 one can be 1 ulp off)
    expected = torch.clamp(z * (sqrt_u * 0.8) + u, min=-0.05)
    assert torch.equal(noise.write_noise(u, 0.8, -0.05, seed=SEED), expected)


def test_crossbar_read_matrix_is_the_fused_differential_read_of_its_state():
    from spikecim.analog.config import load_crossbar_config
    from spikecim.analog.tiles import program_tiles, read_matrix, set_time

    cfg = load_crossbar_config("pcm-aihwkit")
    state = set_time(program_tiles(torch.randn(40, 70), cfg, seed=1), cfg, 3600.0)
    torch.manual_seed(21)
    m = read_matrix(state, cfg)
    torch.manual_seed(21)
    seed = noise.draw_seed()
    z = noise.standard_normal(state.g_drift_k.shape, seed)
    v = torch.clamp(z * state.read_std_k + state.g_drift_k, min=0.0)
    assert torch.equal(m, (v[0] - v[1]).view_as(m))


def test_without_a_c_compiler_noise_falls_back_to_torch_with_one_warning(no_c_compiler):
    g = torch.rand(2, 5000)
    std = torch.full((2, 5000), 0.1)
    torch.manual_seed(2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        m = noise.differential_read(g, std)
        noise.noisy_read(g, std)
    assert len([w for w in record if "could not be built" in str(w.message)]) == 1
    # the fallback is torch's draw: the same formula on torch.randn after the same seed
    torch.manual_seed(2)
    v = torch.randn(2, 5000).mul_(std).add_(g).clamp_(min=0.0)
    assert torch.equal(m, v[0] - v[1])
