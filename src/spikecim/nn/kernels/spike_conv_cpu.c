/* Convolutions of binary spike maps, event-driven, float32 on CPUs with AVX-512 (F, BW, VL) or
 * AVX2 (with FMA and POPCNT).
 *
 * For x [N, C, H, W] (each sample contiguous, the samples any stride apart: a slice of
 * channels) whose entries are all 0 or 1, a weight w [Co, C, KH, KW], stride (sh, sw),
 * dilation 1, one group and zero padding (ph, pw) (Ho = (H + 2ph − KH) / sh + 1 rounded down, Wo
 * likewise):
 *   forward:        y[n, o, i, j] = Σ_{(c, a, b): x[n, c, sh·i + a − ph, sw·j + b − pw] = 1} w[o, c, a, b]
 *   weight gradient: gw[o, c, a, b] = Σ_{(n, i, j): x[n, c, sh·i + a − ph, sw·j + b − pw] = 1} gy[n, o, i, j]
 * the same sums as the dense convolution's, over the spikes only: multiplying by 1 is exact
 * and the terms of the zeros are 0, so the two differ by the order of the float additions.
 * The dense convolution does C·KH·KW multiply-adds per output; these do one addition per
 * spike in the window, a quarter of them at a spike rate of 25 %.
 *
 * spike_masks: the spikes as bits twice: per (n, padded row, padded column) over the
 *   channels, mask[N][Hp][Wp][CW] uint16 (Hp = H + 2ph, Wp = W + 2pw, CW = ceil(C/16), bit
 *   c % 16 of word c / 16; the border and the bits past C stay as the caller zeroed them),
 *   and per (n, c, row) over the columns, rowbits[N][C][H][JW] (JW = ceil(W/16)); per work
 *   item (n, word) the number of ones, or −1 where an entry is neither 0 nor 1 (the caller
 *   then runs the dense convolution).
 * spike_conv_forward: work items of `rows` output rows (n·Ho + i, across samples). Per block
 *   of 16 input channels an item lists, per output position, the weight rows of the spikes in
 *   its window (vpcompressd of the mask word, tap by tap), then adds those rows into the
 *   position's outputs, 64 output channels at a time (4 vector accumulators, the block's
 *   weights KH·KW·16·64 floats, 37 KB at 3×3, in L1), the partial sums staged per position
 *   [P][Cop]; the staged rows are transposed into y at the end (16 × 16 blocks, transpose.h). wt is w as
 *   [Cop/64][KH][KW][C][64], Cop = Co rounded up to 64 (zeros past Co): one pass's weights are
 *   KH·KW runs of 4 KB (16 channels × 64 floats), which share no L1 set within a run.
 * spike_conv_weight_grad: work items of `cbw` (16, 32 or 64) output channels, each item owning
 *   gw's columns (no two threads add into the same entry). Per block of `nblock` samples ×
 *   `rblock` input rows (whole small images, or rows of a large one): the list of each
 *   channel's spikes (vpcompressd of rowbits) and gy's block transposed into
 *   S [nblock][rblock + KH − 1][W + KW − 1][cbw] over the input's grid: S at input position
 *   (i, j) holds gy at the output position (i − KH + 1 + ph, j − KW + 1 + pw) / (sh, sw),
 *   zeros where that lies outside the image or off the stride's grid; for every channel and
 *   kernel row the KW·cbw/16 accumulators take S at each spike shifted by the tap, then are
 *   added into gw [KH][KW][C][Cop]. KW is 1 or 3. With a stride each channel's spikes are
 *   listed by their row's class (i + ph) mod sh and their column's class (j + pw) mod sw:
 *   kernel row a takes only the rows of class a mod sh, and a column class r only the taps
 *   r, r + sw, .. below KW, the ones whose column S holds for it (the others would add S's
 *   zeros; at stride 2 and KW 3, taps 0 and 2 or tap 1).
 *
 * Instruction sets: each pass is one body (masks_item, forward_item, wgrad_item) inlined into
 * two item functions, _avx512 (16 lanes a vector) and _avx2 (8), chosen per call by args.isa;
 * the body calls the pieces that differ, each in two versions (the AVX2 ones end in _avx2). The
 * AVX2 pieces list the spikes with a table of 8-lane permutations (vpermd) instead of vpcompressd,
 * take the masks' bits from the compares' signs instead of mask registers, hold the forward's 64
 * channels in 2 × 8 vectors, run a weight-gradient row's vectors in runs that fit 16 registers,
 * and transpose in 8 × 8 blocks; each output's and weight's sum adds the same terms in the same
 * order lane by lane, so the two give the same bits.
 *
 * Every output's and weight's sum runs in one order whatever the thread count. Built with
 * cbuild.FLAGS (-ffp-contract=off) and -DREAL=float; the vector code carries its own target
 * attributes and spike_conv_available() says which loops this CPU runs.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"
#include "transpose.h"

typedef struct {
    const float *x;  /* [N, C, H, W], each sample contiguous, samples xs apart */
    uint16_t *mask;  /* [N][Hp][Wp][CW], zeroed by the caller */
    uint16_t *rowbits; /* [N][C][H][JW]: bit j % 16 of word j / 16 set where x[n, c, i, j] = 1 */
    const float *wt; /* [Cop/64][KH][KW][C][64] */
    float *y;        /* [N, Co, Ho, Wo] */
    const float *gy; /* [N, Co, Ho, Wo] contiguous */
    float *gw;       /* [KH][KW][C][Cop], zeroed by the caller */
    int64_t *counts; /* [N·CW]: spikes per (n, word), −1: an entry neither 0 nor 1 */
    int64_t N, C, H, W, Co, Cop, KH, KW, ph, pw, Ho, Wo, CW, JW, xs;
    int64_t rows, cbw, rblock, nblock; /* forward: rows per item; weight gradient: channels, rows, samples */
    int64_t sh, sw;                    /* the stride */
    int32_t failed;            /* set when an item could not allocate its buffers */
    int32_t isa;               /* the loops to run: 3 AVX-512, 2 AVX2 (at most spike_conv_available()) */
} spike_conv_args;

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define AVX2 __attribute__((target("avx2,fma,popcnt")))
#define FCB 64 /* forward: output channels per accumulation pass */
/* A pass's one body, inlined into its two item functions with `isa` (3 AVX-512, 2 AVX2) a
 * constant; it calls the pieces that differ as `isa == 3 ? f : f_avx2`, functions with their own
 * target attributes (gcc inlines them into the item of their instruction set or calls them). */
#define ISA_INLINE static inline __attribute__((always_inline))

/* The widest loops this CPU runs: 3 AVX-512 F/BW/VL, 2 AVX2 with FMA and POPCNT, 0 none. */
int spike_conv_available(void) {
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        return 3;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt"))
        return 2;
    return 0;
}

/* compress8[k]: the lanes of k's set bits, lowest first, one byte each (the bytes past them 0):
 * vpermd by these indices moves the lanes of an 8-lane vector that k selects to its front. */
static uint64_t compress8[256];

__attribute__((constructor)) static void fill_compress8(void) {
    for (int k = 0; k < 256; k++) {
        uint64_t e = 0;
        for (int b = 0, at = 0; b < 8; b++)
            if (k >> b & 1) e |= (uint64_t)b << (8 * at++);
        compress8[k] = e;
    }
}

/* The lanes of lo (bits 0–7 of k) and of hi (bits 8–15) whose bits are set, stored to L in
 * lane order: vpcompressd of a 16-bit mask, 8 lanes at a time. Writes L[0 .. count + 8);
 * returns the count. */
AVX2 static inline int64_t compress16_avx2(int32_t *L, unsigned k, __m256i lo, __m256i hi) {
    const unsigned k0 = k & 0xFFu, k1 = k >> 8;
    const int64_t n0 = __builtin_popcount(k0);
    const __m256i i0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(compress8 + k0)));
    const __m256i i1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(compress8 + k1)));
    _mm256_storeu_si256((__m256i *)L, _mm256_permutevar8x32_epi32(lo, i0));
    _mm256_storeu_si256((__m256i *)(L + n0), _mm256_permutevar8x32_epi32(hi, i1));
    return n0 + __builtin_popcount(k1);
}

/* ---- masks ------------------------------------------------------------------------------ */

/* One channel at up to 16 positions x[0 .. nj): the word whose bit j is set where x[j] ≠ 0
 * (one masked load, a compare to 0 and one to 1); odd takes the bits of the entries neither 0
 * nor 1. */
AVX512 static inline unsigned channel_bits(const float *x, int64_t nj, unsigned *odd) {
    const __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << nj) - 1u), x);
    const __mmask16 nz = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    *odd |= nz & _mm512_cmp_ps_mask(v, _mm512_set1_ps(1.0f), _CMP_NEQ_UQ);
    return nz;
}

/* channel_bits, 8 lanes a vector: the bits from the compares' signs (vmovmskps), two vectors
 * of 8 positions each, loaded masked where nj < 16 (the rare last run of a row). */
AVX2 static inline unsigned channel_bits_avx2(const float *x, int64_t nj, unsigned *odd) {
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i in0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)nj), iota);
    const __m256i in1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)nj - 8), iota);
    const int whole = __builtin_expect(nj == 16, 1);
    const __m256 v0 = whole ? _mm256_loadu_ps(x) : _mm256_maskload_ps(x, in0);
    const __m256 v1 = whole ? _mm256_loadu_ps(x + 8) : _mm256_maskload_ps(x + 8, in1);
    const unsigned nz = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v0, zero, _CMP_NEQ_UQ)) |
                        (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v1, zero, _CMP_NEQ_UQ)) << 8;
    *odd |= nz & ((unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v0, one, _CMP_NEQ_UQ)) |
                  (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v1, one, _CMP_NEQ_UQ)) << 8);
    return nz;
}

/* The 16 channels' words k[c] (bit j: position j) as one word per position: bit c of
 * m[j·stride] = bit j of k[c], for j < nj; bit j shifted to the sign of each 16-bit lane, the
 * lanes' signs taken (vpmovw2m). */
AVX512 static inline void position_words(uint16_t *m, int64_t stride, const uint16_t *k, int64_t nj) {
    const __m256i kv = _mm256_loadu_si256((const __m256i *)k);
    for (int64_t j = 0; j < nj; j++)
        m[j * stride] = _mm256_movepi16_mask(_mm256_sll_epi16(kv, _mm_cvtsi64_si128(15 - j)));
}

/* position_words without mask registers: the shifted lanes packed to bytes (signed saturation
 * keeps the sign) for the bytes' signs (vpmovmskb). */
AVX2 static inline void position_words_avx2(uint16_t *m, int64_t stride, const uint16_t *k, int64_t nj) {
    const __m256i kv = _mm256_loadu_si256((const __m256i *)k);
    for (int64_t j = 0; j < nj; j++) {
        const __m256i b = _mm256_sll_epi16(kv, _mm_cvtsi64_si128(15 - j));
        m[j * stride] = (uint16_t)_mm_movemask_epi8(
            _mm_packs_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1)));
    }
}

/* Item (n, word), by the loops of `isa` (3 AVX-512, 2 AVX2: a constant where masks_item_avx512
 * and _avx2 inline it): per input row, 16 positions at a time, each channel's word over the
 * positions (channel_bits) into rowbits, then the 16 words transposed into mask
 * (position_words); counts[item]: the number of ones, or −1 where an entry is neither 0 nor 1
 * (the item stops there). */
ISA_INLINE void masks_item(const void *p, int64_t item, int isa) {
    const spike_conv_args *a = (const spike_conv_args *)p;
    const int64_t n = item / a->CW, cw = item % a->CW, Hp = a->H + 2 * a->ph, Wp = a->W + 2 * a->pw;
    const int64_t nc = a->C - 16 * cw < 16 ? a->C - 16 * cw : 16, H = a->H, W = a->W;
    int64_t spikes = 0;
    for (int64_t i = 0; i < H; i++)
        for (int64_t j0 = 0; j0 < W; j0 += 16) {
            const int64_t nj = W - j0 < 16 ? W - j0 : 16;
            uint16_t k[16] = {0};
            unsigned odd = 0;
            for (int64_t c = 0; c < nc; c++) {
                const float *x = a->x + n * a->xs + ((16 * cw + c) * H + i) * W + j0;
                const unsigned nz = (isa == 3 ? channel_bits : channel_bits_avx2)(x, nj, &odd);
                k[c] = (uint16_t)nz;
                a->rowbits[((n * a->C + 16 * cw + c) * H + i) * a->JW + j0 / 16] = (uint16_t)nz;
                spikes += __builtin_popcount(nz);
            }
            if (odd) {
                a->counts[item] = -1;
                return;
            }
            uint16_t *m = a->mask + ((n * Hp + i + a->ph) * Wp + j0 + a->pw) * a->CW + cw;
            (isa == 3 ? position_words : position_words_avx2)(m, a->CW, k, nj);
        }
    a->counts[item] = spikes;
}

AVX512 static void masks_item_avx512(const void *p, int64_t item) { masks_item(p, item, 3); }
AVX2 static void masks_item_avx2(const void *p, int64_t item) { masks_item(p, item, 2); }

void spike_masks(const spike_conv_args *a, int threads) {
    run_items(a, a->isa >= 3 ? masks_item_avx512 : masks_item_avx2, a->N * a->CW, threads);
}

/* ---- forward ---------------------------------------------------------------------------- */

/* The weight rows of one output position's spikes on one channel block: offsets
 * (tap·C + c)·64 into one pass's block of wt, tap by tap; returns their number. m: the mask
 * word of the window's top-left tap; base[16t .. 16t + 16): tap t's offsets of the block's 16
 * channels (64-byte aligned). L has room for KH·KW·16 + 16 entries (each compress stores 16). */
#define SPIKE_LIST(NAME, KW_)                                                                    \
    AVX512 static inline int64_t NAME(const uint16_t *m, int64_t row_stride, int64_t col_stride,  \
                                      int64_t KH, const int32_t *base, int32_t *L) {             \
        int64_t cnt = 0;                                                                         \
        for (int64_t ka = 0; ka < KH; ka++, m += row_stride, base += 16 * KW_)                   \
            _Pragma("GCC unroll 3") for (int kb = 0; kb < KW_; kb++) {                           \
                const __mmask16 k = m[kb * col_stride];                                          \
                const __m512i offsets = _mm512_load_si512(base + 16 * kb);                       \
                _mm512_storeu_si512(L + cnt, _mm512_maskz_compress_epi32(k, offsets));           \
                cnt += __builtin_popcount(k);                                                    \
            }                                                                                    \
        return cnt;                                                                              \
    }
SPIKE_LIST(spike_list_3, 3)
SPIKE_LIST(spike_list_1, 1)

/* As SPIKE_LIST, 8 lanes at a time: channels 0–7, then 8–15 of each tap. */
#define SPIKE_LIST_AVX2(NAME, KW_)                                                                  \
    AVX2 static inline int64_t NAME(const uint16_t *m, int64_t row_stride, int64_t col_stride,       \
                                    int64_t KH, const int32_t *base, int32_t *L) {                   \
        int64_t cnt = 0;                                                                            \
        for (int64_t ka = 0; ka < KH; ka++, m += row_stride, base += 16 * KW_)                      \
            _Pragma("GCC unroll 3") for (int kb = 0; kb < KW_; kb++) {                              \
                const __m256i *offsets = (const __m256i *)(base + 16 * kb);                         \
                cnt += compress16_avx2(L + cnt, m[kb * col_stride], offsets[0], offsets[1]);        \
            }                                                                                       \
        return cnt;                                                                                 \
    }
SPIKE_LIST_AVX2(spike_list_3_avx2, 3)
SPIKE_LIST_AVX2(spike_list_1_avx2, 1)

/* One position's 64 output channels: st = (st, or 0 where first) + the rows wb + L[e] of the
 * even spikes, + those of the odd spikes (added last): two sets of four accumulators, eight
 * chains of additions that hide the adder's latency (four do not). Always inlined into
 * forward_item_avx512's loop over the positions (gcc's limits would call it); the vectors
 * written out one by one, so that each row's address is formed once (lea) for its four loads. */
AVX512 static inline __attribute__((always_inline)) void add_rows(float *st, const float *wb, const int32_t *L,
                                                                  int64_t cnt, int first) {
    __m512 s0, s1, s2, s3;
    if (first) {
        s0 = s1 = s2 = s3 = _mm512_setzero_ps();
    } else {
        s0 = _mm512_load_ps(st), s1 = _mm512_load_ps(st + 16);
        s2 = _mm512_load_ps(st + 32), s3 = _mm512_load_ps(st + 48);
    }
    __m512 t0 = _mm512_setzero_ps(), t1 = t0, t2 = t0, t3 = t0;
    int64_t e = 0;
    for (; e + 1 < cnt; e += 2) {
        const float *u = wb + L[e], *v = wb + L[e + 1];
        s0 = _mm512_add_ps(s0, _mm512_load_ps(u)), t0 = _mm512_add_ps(t0, _mm512_load_ps(v));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(u + 16)), t1 = _mm512_add_ps(t1, _mm512_load_ps(v + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(u + 32)), t2 = _mm512_add_ps(t2, _mm512_load_ps(v + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(u + 48)), t3 = _mm512_add_ps(t3, _mm512_load_ps(v + 48));
    }
    if (e < cnt) {
        const float *u = wb + L[e];
        s0 = _mm512_add_ps(s0, _mm512_load_ps(u)), s1 = _mm512_add_ps(s1, _mm512_load_ps(u + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(u + 32)), s3 = _mm512_add_ps(s3, _mm512_load_ps(u + 48));
    }
    _mm512_store_ps(st, _mm512_add_ps(s0, t0)), _mm512_store_ps(st + 16, _mm512_add_ps(s1, t1));
    _mm512_store_ps(st + 32, _mm512_add_ps(s2, t2)), _mm512_store_ps(st + 48, _mm512_add_ps(s3, t3));
}

/* add_rows, 8 lanes a vector, lane by lane in its order. The two sets of eight accumulators
 * fill AVX2's 16 registers: the additions take the weights from memory (faster than two runs
 * of 32 channels over the list). */
AVX2 static inline void add_rows_avx2(float *st, const float *wb, const int32_t *L, int64_t cnt, int first) {
    __m256 s[FCB / 8], t[FCB / 8];
    #pragma GCC unroll 8
    for (int v = 0; v < FCB / 8; v++) {
        s[v] = first ? _mm256_setzero_ps() : _mm256_load_ps(st + 8 * v);
        t[v] = _mm256_setzero_ps();
    }
    int64_t e = 0;
    for (; e + 1 < cnt; e += 2) {
        const float *u = wb + L[e], *w = wb + L[e + 1];
        #pragma GCC unroll 8
        for (int v = 0; v < FCB / 8; v++) {
            s[v] = _mm256_add_ps(s[v], _mm256_load_ps(u + 8 * v));
            t[v] = _mm256_add_ps(t[v], _mm256_load_ps(w + 8 * v));
        }
    }
    if (e < cnt) {
        const float *u = wb + L[e];
        #pragma GCC unroll 8
        for (int v = 0; v < FCB / 8; v++) s[v] = _mm256_add_ps(s[v], _mm256_load_ps(u + 8 * v));
    }
    #pragma GCC unroll 8
    for (int v = 0; v < FCB / 8; v++) _mm256_store_ps(st + 8 * v, _mm256_add_ps(s[v], t[v]));
}

/* Item: output rows r0 .. r0 + rows − 1 (n·Ho + i), by the loops of `isa` (3 AVX-512, 2 AVX2:
 * a constant where forward_item_avx512 and _avx2 inline it). Per block of 16 input channels,
 * each position's spike list (spike_list_3 or _1), then per 64 output channels each position's
 * sums into stage (add_rows); stage into y by B × B transposes, B the lanes of a vector. */
ISA_INLINE void forward_item(const void *p, int64_t item, int isa) {
    spike_conv_args *a = (spike_conv_args *)p;
    const int64_t Ho = a->Ho, Wo = a->Wo, Cop = a->Cop, r0 = item * a->rows;
    const int64_t nr = a->N * Ho - r0 < a->rows ? a->N * Ho - r0 : a->rows, np = nr * Wo;
    const int64_t maxl = a->KH * a->KW * 16 + 16;
    const int64_t Hp = a->H + 2 * a->ph, Wp = a->W + 2 * a->pw, CW = a->CW, taps = a->KH * a->KW;
    const int64_t B = isa == 3 ? 16 : 8;
    int32_t *lists = malloc(sizeof(int32_t) * (size_t)(np * maxl));
    int64_t *cnts = malloc(sizeof(int64_t) * (size_t)np);
    float *stage = aligned_alloc(64, sizeof(float) * (size_t)(np * Cop));
    int32_t *base = aligned_alloc(64, sizeof(int32_t) * (size_t)(16 * taps));
    if (!lists || !cnts || !stage || !base) {
        a->failed = 1;
        free(lists), free(cnts), free(stage), free(base);
        return;
    }
    for (int64_t cw = 0; cw < CW; cw++) {
        /* base[16t + l]: the offset of channel 16·cw + l's weight row at tap t */
        for (int64_t t = 0; t < taps; t++)
            for (int64_t l = 0; l < 16; l++) base[16 * t + l] = (int32_t)((t * a->C + 16 * cw + l) * FCB);
        for (int64_t rr = 0, q = 0; rr < nr; rr++) { /* position q's spikes: L = lists + q·maxl, cnts[q] */
            const int64_t r = r0 + rr, n = r / Ho, i = r % Ho;
            const uint16_t *m = a->mask + (n * Hp + i * a->sh) * Wp * CW + cw; /* the window's top-left mask word */
            const int64_t step = a->sw * CW;
            int32_t *L = lists + q * maxl;
            if (a->KW == 3)
                for (int64_t j = 0; j < Wo; j++, q++, m += step, L += maxl)
                    cnts[q] = (isa == 3 ? spike_list_3 : spike_list_3_avx2)(m, Wp * CW, CW, a->KH, base, L);
            else
                for (int64_t j = 0; j < Wo; j++, q++, m += step, L += maxl)
                    cnts[q] = (isa == 3 ? spike_list_1 : spike_list_1_avx2)(m, Wp * CW, CW, a->KH, base, L);
        }
        for (int64_t cb = 0; cb < Cop; cb += FCB) {
            const float *wb = a->wt + cb * a->KH * a->KW * a->C;
            for (int64_t q = 0; q < np; q++)
                (isa == 3 ? add_rows : add_rows_avx2)(stage + q * Cop + cb, wb, lists + q * maxl, cnts[q], cw == 0);
        }
    }
    for (int64_t q0 = 0; q0 < np; q0 += Wo) { /* stage [positions][Cop] -> y [Co][positions] by row */
        const int64_t r = r0 + q0 / Wo, n = r / Ho, i = r % Ho;
        for (int64_t j0 = 0; j0 < Wo; j0 += B)
            for (int64_t o0 = 0; o0 < a->Co; o0 += B)
                (isa == 3 ? transpose16_avx512 : transpose8_avx2)(
                    a->y + ((n * a->Co + o0) * Ho + i) * Wo + j0, Ho * Wo, stage + (q0 + j0) * Cop + o0, Cop,
                    (int)(Wo - j0 < B ? Wo - j0 : B), (int)(a->Co - o0 < B ? a->Co - o0 : B));
    }
    free(lists), free(cnts), free(stage), free(base);
}

AVX512 static void forward_item_avx512(const void *p, int64_t item) { forward_item(p, item, 3); }
AVX2 static void forward_item_avx2(const void *p, int64_t item) { forward_item(p, item, 2); }

void spike_conv_forward(spike_conv_args *a, int threads) {
    a->failed = 0;
    run_items(a, a->isa >= 3 ? forward_item_avx512 : forward_item_avx2, (a->N * a->Ho + a->rows - 1) / a->rows,
              threads);
}

/* ---- weight gradient -------------------------------------------------------------------- */

/* The offsets at + b of k's set bits b, lowest first, to L (writes L[0 .. count + 16));
 * returns the count. */
AVX512 static inline int64_t bit_offsets(int32_t *L, unsigned k, int32_t at) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    _mm512_storeu_si512(L, _mm512_maskz_compress_epi32((__mmask16)k, _mm512_add_epi32(lane, _mm512_set1_epi32(at))));
    return __builtin_popcount(k);
}

/* bit_offsets by compress16_avx2 (writes L[0 .. count + 8)). */
AVX2 static inline int64_t bit_offsets_avx2(int32_t *L, unsigned k, int32_t at) {
    const __m256i lo = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(at));
    return compress16_avx2(L, k, lo, _mm256_add_epi32(lo, _mm256_set1_epi32(8)));
}

/* For channel c's spikes L[0 .. cnt) (offsets (i − i0)·Ws + j) and kernel row ka: the NT·NACC
 * accumulators take S at each spike, tap kb = kb0 + t·KS (t < NT) at column offset −kb, and go
 * into gw. A stride-1 row runs every tap (kb0 0, KS 1, NT = KW); a strided one the taps that
 * meet gy's columns from the spikes' column class (NT = 2 only at stride 2: taps 0 and 2). KS
 * is a constant so that the taps' offsets are the loads' immediates (a variable one cost the
 * 64-channel rows 10 %). */
#define WGRAD_ROW(NAME, NT, KS, NACC)                                                               \
    AVX512 static void NAME(const spike_conv_args *a, const float *S, int64_t Ws, const int32_t *L, \
                            int64_t cnt, int64_t c, int64_t ka, int64_t cb, int64_t kb0) {          \
        const int64_t cbw = 16 * NACC, step = KS * cbw;                                             \
        __m512 acc[NT][NACC];                                                                       \
        for (int t = 0; t < NT; t++)                                                                \
            for (int v = 0; v < NACC; v++) acc[t][v] = _mm512_setzero_ps();                         \
        const float *base = S + ((a->KH - 1 - ka) * Ws + a->KW - 1 - kb0) * cbw;                    \
        for (int64_t e = 0; e < cnt; e++) {                                                         \
            const float *s = base + (int64_t)L[e] * cbw;                                            \
            _Pragma("GCC unroll 3") for (int t = 0; t < NT; t++)                                    \
                _Pragma("GCC unroll 4") for (int v = 0; v < NACC; v++)                              \
                    acc[t][v] = _mm512_add_ps(acc[t][v], _mm512_load_ps(s - t * step + 16 * v));    \
        }                                                                                           \
        for (int t = 0; t < NT; t++) {                                                              \
            float *g = a->gw + ((ka * a->KW + kb0 + t * KS) * a->C + c) * a->Cop + cb;              \
            for (int v = 0; v < NACC; v++)                                                          \
                _mm512_storeu_ps(g + 16 * v, _mm512_add_ps(_mm512_loadu_ps(g + 16 * v), acc[t][v]));  \
        }                                                                                           \
    }
WGRAD_ROW(wgrad_row_3_1, 3, 1, 1)
WGRAD_ROW(wgrad_row_3_2, 3, 1, 2)
WGRAD_ROW(wgrad_row_3_4, 3, 1, 4)
WGRAD_ROW(wgrad_row_2_1, 2, 2, 1)
WGRAD_ROW(wgrad_row_2_2, 2, 2, 2)
WGRAD_ROW(wgrad_row_2_4, 2, 2, 4)
WGRAD_ROW(wgrad_row_1_1, 1, 1, 1)
WGRAD_ROW(wgrad_row_1_2, 1, 1, 2)
WGRAD_ROW(wgrad_row_1_4, 1, 1, 4)

/* WGRAD_ROW, 8 lanes a vector: the 2·NACC vectors of each tap in runs of NV (the NT·NV
 * accumulators stay in AVX2's 16 registers), each run over all the spikes; per lane the same
 * sums in the same order. */
#define WGRAD_ROW_AVX2(NAME, NT, KS, NACC, NV)                                                       \
    AVX2 static void NAME(const spike_conv_args *a, const float *S, int64_t Ws, const int32_t *L,    \
                          int64_t cnt, int64_t c, int64_t ka, int64_t cb, int64_t kb0) {            \
        const int64_t cbw = 16 * NACC, step = KS * cbw;                                              \
        const float *base = S + ((a->KH - 1 - ka) * Ws + a->KW - 1 - kb0) * cbw;                     \
        for (int h = 0; h < 2 * NACC; h += NV) {                                                     \
            __m256 acc[NT][NV];                                                                      \
            for (int t = 0; t < NT; t++)                                                             \
                for (int v = 0; v < NV; v++) acc[t][v] = _mm256_setzero_ps();                        \
            for (int64_t e = 0; e < cnt; e++) {                                                      \
                const float *s = base + (int64_t)L[e] * cbw + 8 * h;                                 \
                _Pragma("GCC unroll 3") for (int t = 0; t < NT; t++)                                 \
                    _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                             \
                        acc[t][v] = _mm256_add_ps(acc[t][v], _mm256_load_ps(s - t * step + 8 * v));  \
            }                                                                                        \
            for (int t = 0; t < NT; t++) {                                                           \
                float *g = a->gw + ((ka * a->KW + kb0 + t * KS) * a->C + c) * a->Cop + cb + 8 * h;   \
                for (int v = 0; v < NV; v++)                                                         \
                    _mm256_storeu_ps(g + 8 * v, _mm256_add_ps(_mm256_loadu_ps(g + 8 * v), acc[t][v])); \
            }                                                                                        \
        }                                                                                            \
    }
WGRAD_ROW_AVX2(wgrad_row_3_1_avx2, 3, 1, 1, 2)
WGRAD_ROW_AVX2(wgrad_row_3_2_avx2, 3, 1, 2, 4)
WGRAD_ROW_AVX2(wgrad_row_3_4_avx2, 3, 1, 4, 4)
WGRAD_ROW_AVX2(wgrad_row_2_1_avx2, 2, 2, 1, 2)
WGRAD_ROW_AVX2(wgrad_row_2_2_avx2, 2, 2, 2, 4)
WGRAD_ROW_AVX2(wgrad_row_2_4_avx2, 2, 2, 4, 4)
WGRAD_ROW_AVX2(wgrad_row_1_1_avx2, 1, 1, 1, 2)
WGRAD_ROW_AVX2(wgrad_row_1_2_avx2, 1, 1, 2, 4)
WGRAD_ROW_AVX2(wgrad_row_1_4_avx2, 1, 1, 4, 8)

typedef void (*wgrad_row_fn)(const spike_conv_args *, const float *, int64_t, const int32_t *, int64_t, int64_t,
                             int64_t, int64_t, int64_t);

/* The row function for NT taps (1 .. 3: 2 only at stride 2) and cbw output channels, by the
 * loops of `isa`. */
static wgrad_row_fn wgrad_row_for(int64_t nt, int64_t cbw, int isa) {
    static const wgrad_row_fn f[2][3][3] = {
        {{wgrad_row_1_1_avx2, wgrad_row_1_2_avx2, wgrad_row_1_4_avx2},
         {wgrad_row_2_1_avx2, wgrad_row_2_2_avx2, wgrad_row_2_4_avx2},
         {wgrad_row_3_1_avx2, wgrad_row_3_2_avx2, wgrad_row_3_4_avx2}},
        {{wgrad_row_1_1, wgrad_row_1_2, wgrad_row_1_4},
         {wgrad_row_2_1, wgrad_row_2_2, wgrad_row_2_4},
         {wgrad_row_3_1, wgrad_row_3_2, wgrad_row_3_4}},
    };
    return f[isa == 3][nt - 1][cbw == 16 ? 0 : cbw == 32 ? 1 : 2];
}

/* Item: output channels cb .. cb + cbw − 1, by the loops of `isa` (3 AVX-512, 2 AVX2: a constant
 * where wgrad_item_avx512 and _avx2 inline it). Per block of samples and rows, each channel's
 * spike list (bit_offsets) and S (B × B transposes, B the lanes of a vector), then per channel
 * and kernel row the sums (WGRAD_ROW or WGRAD_ROW_AVX2 for KW and cbw). */
ISA_INLINE void wgrad_item(const void *p, int64_t item, int isa) {
    spike_conv_args *a = (spike_conv_args *)p;
    const int64_t cbw = a->cbw, cb = item * cbw, H = a->H, C = a->C, R = a->rblock, NB = a->nblock;
    const int64_t Ws = a->W + a->KW - 1, Rs = R + a->KH - 1, per_c = NB * R * 16 * a->JW;
    const int64_t B = isa == 3 ? 16 : 8, sh = a->sh, sw = a->sw, HW = a->Ho * a->Wo;
    const int64_t classes = sh * sw; /* (row class, column class) */
    int32_t *lists = malloc(sizeof(int32_t) * (size_t)(C * per_c + 16));
    /* cnts[c·classes + k], first[..]: the number of channel c's spikes of class k, and where
     * their list starts in lists */
    int64_t *cnts = malloc(sizeof(int64_t) * (size_t)(2 * C * classes)), *first = cnts + C * classes;
    /* colmask[r·JW + jw]: the columns 16·jw + b of column class r, (16·jw + b + pw) mod sw = r */
    uint16_t *colmask = malloc(sizeof(uint16_t) * (size_t)(sw * a->JW));
    float *S = aligned_alloc(64, sizeof(float) * (size_t)(NB * Rs * Ws * cbw));
    if (!lists || !cnts || !colmask || !S) {
        a->failed = 1;
        free(lists), free(cnts), free(colmask), free(S);
        return;
    }
    /* column class r's row function: its taps r, r + sw, .. below KW (classes from KW on have none) */
    const int64_t col_classes = sw < a->KW ? sw : a->KW;
    wgrad_row_fn row[3];
    for (int64_t r = 0; r < col_classes; r++) row[r] = wgrad_row_for((a->KW - 1 - r) / sw + 1, cbw, isa);
    /* kernel row ka's row class, times sw (no division in the loops: they cost the 64-channel
     * layers 10 %) */
    int64_t ka_class[16]; /* KH <= 16: the caller's limit */
    for (int64_t ka = 0; ka < a->KH; ka++) ka_class[ka] = ka % sh * sw;
    for (int64_t r = 0; r < sw; r++)
        for (int64_t jw = 0; jw < a->JW; jw++) {
            unsigned m = 0;
            for (int64_t b = 0; b < 16; b++) m |= (unsigned)((16 * jw + b + a->pw) % sw == r) << b;
            colmask[r * a->JW + jw] = (uint16_t)m;
        }
    /* gy's channels in this item (none in the columns past Co that round Cop up) */
    const int64_t no = a->Co - cb < cbw ? (a->Co > cb ? a->Co - cb : 0) : cbw;
    /* gy's column xo goes to S's column sw·xo + jo0; the columns xo_lo .. xo_hi − 1 land in [0, Ws) */
    const int64_t jo0 = a->KW - 1 - a->pw, xo_lo = jo0 >= 0 ? 0 : (sw - 1 - jo0) / sw;
    const int64_t xo_hi = (Ws - 1 - jo0) / sw + 1 < a->Wo ? (Ws - 1 - jo0) / sw + 1 : a->Wo;
    for (int64_t n0 = 0; n0 < a->N; n0 += NB)
        for (int64_t i0 = 0; i0 < H; i0 += R) {
            const int64_t nn = a->N - n0 < NB ? a->N - n0 : NB, ni = H - i0 < R ? H - i0 : R;
            /* channel c's spikes in these rows of these samples, offsets (s·Rs + i)·Ws + j, class
             * by class: k = q·sw + r for the rows i with (i0 + i + ph) mod sh = q and the columns
             * j with (j + pw) mod sw = r */
            int64_t i_first[16]; /* the first row of each class (sh <= 16: the caller's limit) */
            for (int64_t q = 0; q < sh; q++) i_first[q] = ((q - (i0 + a->ph)) % sh + sh) % sh;
            for (int64_t c = 0; c < C; c++) {
                int32_t *L = lists + c * per_c;
                int64_t cnt = 0;
                for (int64_t q = 0; q < sh; q++)
                    for (int64_t r = 0; r < sw; r++) {
                        first[c * classes + q * sw + r] = c * per_c + cnt;
                        const int64_t from = cnt;
                        const uint16_t *cm = colmask + r * a->JW;
                        for (int64_t s = 0; s < nn; s++)
                            for (int64_t i = i_first[q]; i < ni; i += sh) {
                                const uint16_t *bits = a->rowbits + (((n0 + s) * C + c) * H + i0 + i) * a->JW;
                                int32_t at = (int32_t)((s * Rs + i) * Ws);
                                for (int64_t jw = 0; jw < a->JW; jw++, at += 16)
                                    cnt += (isa == 3 ? bit_offsets : bit_offsets_avx2)(L + cnt, bits[jw] & cm[jw], at);
                            }
                        cnts[c * classes + q * sw + r] = cnt - from;
                    }
            }
            /* S[s][si][sj][v] = gy[n0 + s, cb + v, io / sh, jo / sw] with io = i0 + si − (KH − 1) + ph,
             * jo = sj − (KW − 1) + pw; 0 outside the image or where sh does not divide io (sw jo) */
            memset(S, 0, sizeof(float) * (size_t)(NB * Rs * Ws * cbw));
            for (int64_t s = 0; s < nn; s++)
                for (int64_t si = 0; si < Rs; si++) {
                    const int64_t io = i0 + si - (a->KH - 1) + a->ph, oi = sh == 1 ? io : io / sh;
                    if (io < 0 || oi * sh != io || oi >= a->Ho) continue;
                    /* S's row: [sj][v] from gy's rows [v][xo], B × B blocks (transpose.h) written sw
                     * columns apart */
                    const float *row_gy = a->gy + (((n0 + s) * a->Co + cb) * a->Ho + oi) * a->Wo;
                    float *dst = S + (s * Rs + si) * Ws * cbw;
                    for (int64_t xo = xo_lo; xo < xo_hi; xo += B)
                        for (int64_t v = 0; v < no; v += B)
                            (isa == 3 ? transpose16_avx512 : transpose8_avx2)(
                                dst + (sw * xo + jo0) * cbw + v, sw * cbw, row_gy + v * HW + xo, HW,
                                (int)(no - v < B ? no - v : B), (int)(xo_hi - xo < B ? xo_hi - xo : B));
                }
            /* kernel row ka takes the rows of class ka mod sh (S's other rows for it are zeros);
             * column class r the taps kb = r, r + sw, .. below KW (the others read zeros). Stride
             * 1 has one class, every spike and tap: its own loop (the classes' indexing cost its
             * 64-channel layers 3 %) */
            if (classes == 1) {
                for (int64_t c = 0; c < C; c++)
                    if (cnts[c])
                        for (int64_t ka = 0; ka < a->KH; ka++)
                            row[0](a, S, Ws, lists + c * per_c, cnts[c], c, ka, cb, 0);
            } else {
                for (int64_t c = 0; c < C; c++)
                    for (int64_t ka = 0; ka < a->KH; ka++)
                        for (int64_t r = 0; r < col_classes; r++) {
                            const int64_t k = c * classes + ka_class[ka] + r;
                            if (cnts[k]) row[r](a, S, Ws, lists + first[k], cnts[k], c, ka, cb, r);
                        }
            }
        }
    free(lists), free(cnts), free(colmask), free(S);
}

AVX512 static void wgrad_item_avx512(const void *p, int64_t item) { wgrad_item(p, item, 3); }
AVX2 static void wgrad_item_avx2(const void *p, int64_t item) { wgrad_item(p, item, 2); }

void spike_conv_weight_grad(spike_conv_args *a, int threads) {
    a->failed = 0;
    run_items(a, a->isa >= 3 ? wgrad_item_avx512 : wgrad_item_avx2, (a->Cop + a->cbw - 1) / a->cbw, threads);
}
#else
int spike_conv_available(void) { return 0; }
void spike_masks(const spike_conv_args *a, int threads) { (void)a, (void)threads; }
void spike_conv_forward(spike_conv_args *a, int threads) { (void)threads, a->failed = 1; }
void spike_conv_weight_grad(spike_conv_args *a, int threads) { (void)threads, a->failed = 1; }
#endif
