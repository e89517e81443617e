// gpumesh proof-of-compute kernels: challenge matrices from the seed (the CUDA twin of the
// protocol's generator is prepended to this file), keyed BLAKE3 row hashing with one thread per
// 1 KiB chunk, Merkle levels, and a copy kernel for the bandwidth measurement.
// Compiled at run time by NVRTC for the device's architecture; no headers needed.

// ---- generation ---------------------------------------------------------------------------

// A, row-major: one 8-byte word per thread, coalesced.
extern "C" __global__ void generate_a(unsigned long long* a, unsigned int n,
                                      unsigned long long k0, unsigned long long k1,
                                      unsigned long long k2, unsigned long long k3) {
    const unsigned long long words_per_row = n / 8;
    const unsigned long long total = (unsigned long long)n * words_per_row;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < total; i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned int row = (unsigned int)(i / words_per_row);
        const unsigned int block = (unsigned int)(i % words_per_row);
        a[i] = gpumesh_word(k0, k1, k2, k3, 0u, row, block);
    }
}

// B transposed (Bt[j][k] = B[k][j]), which is B in column-major order: cuBLASLt's fast int8
// path wants the "TN" form. A 64 (k) × 64 (j) tile per block of 512 threads: each thread makes
// one word of B (8 columns of one k-row) into shared memory, then writes 8 consecutive k of
// one Bt row as one 8-byte store.
extern "C" __global__ void generate_bt(unsigned char* bt, unsigned int n,
                                       unsigned long long k0, unsigned long long k1,
                                       unsigned long long k2, unsigned long long k3) {
    __shared__ unsigned char tile[64][64 + 8];
    const unsigned int t = threadIdx.x;
    const unsigned int k_tile = blockIdx.y * 64, j_tile = blockIdx.x * 64;
    {
        const unsigned int kr = t / 8, wb = t % 8;
        const unsigned long long w =
            gpumesh_word(k0, k1, k2, k3, 1u, k_tile + kr, (j_tile / 8) + wb);
#pragma unroll
        for (int b = 0; b < 8; ++b) tile[kr][wb * 8 + b] = (unsigned char)(w >> (8 * b));
    }
    __syncthreads();
    {
        const unsigned int j = t / 8, kp = t % 8;
        unsigned long long out = 0;
#pragma unroll
        for (int b = 0; b < 8; ++b) out |= (unsigned long long)tile[kp * 8 + b][j] << (8 * b);
        unsigned long long* dst =
            (unsigned long long*)(bt + (unsigned long long)(j_tile + j) * n + k_tile);
        dst[kp] = out;
    }
}

// ---- BLAKE3 (keyed mode), bit-compatible with the blake3 crate ----------------------------

#define B3_CHUNK_START 1u
#define B3_CHUNK_END 2u
#define B3_PARENT 4u
#define B3_ROOT 8u
#define B3_KEYED_HASH 16u

__device__ __forceinline__ unsigned int b3_rotr(unsigned int x, unsigned int r) {
    return (x >> r) | (x << (32 - r));
}

#define B3_G(a, b, c, d, mx, my)                 \
    v[a] = v[a] + v[b] + (mx);                   \
    v[d] = b3_rotr(v[d] ^ v[a], 16);             \
    v[c] = v[c] + v[d];                          \
    v[b] = b3_rotr(v[b] ^ v[c], 12);             \
    v[a] = v[a] + v[b] + (my);                   \
    v[d] = b3_rotr(v[d] ^ v[a], 8);              \
    v[c] = v[c] + v[d];                          \
    v[b] = b3_rotr(v[b] ^ v[c], 7);

// Compresses one 64-byte block into the 8-word chaining value `cv` (updated in place).
__device__ __forceinline__ void b3_compress(unsigned int cv[8], const unsigned int block[16],
                                            unsigned long long counter, unsigned int flags) {
    const unsigned int IV0 = 0x6A09E667u, IV1 = 0xBB67AE85u, IV2 = 0x3C6EF372u,
                       IV3 = 0xA54FF53Au;
    unsigned int v[16] = {cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7],
                          IV0, IV1, IV2, IV3, (unsigned int)counter,
                          (unsigned int)(counter >> 32), 64u, flags};
    unsigned int m[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) m[i] = block[i];
#pragma unroll
    for (int round = 0; round < 7; ++round) {
        B3_G(0, 4, 8, 12, m[0], m[1]);
        B3_G(1, 5, 9, 13, m[2], m[3]);
        B3_G(2, 6, 10, 14, m[4], m[5]);
        B3_G(3, 7, 11, 15, m[6], m[7]);
        B3_G(0, 5, 10, 15, m[8], m[9]);
        B3_G(1, 6, 11, 12, m[10], m[11]);
        B3_G(2, 7, 8, 13, m[12], m[13]);
        B3_G(3, 4, 9, 14, m[14], m[15]);
        if (round < 6) {
            // BLAKE3's message permutation.
            const unsigned int p[16] = {m[2], m[6], m[3], m[10], m[7], m[0], m[4], m[13],
                                        m[1], m[11], m[12], m[5], m[9], m[14], m[15], m[8]};
#pragma unroll
            for (int i = 0; i < 16; ++i) m[i] = p[i];
        }
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) cv[i] = v[i] ^ v[i + 8];
}

__device__ __forceinline__ void b3_parent(const unsigned int key[8], const unsigned int left[8],
                                          const unsigned int right[8], bool root,
                                          unsigned int out[8]) {
    unsigned int block[16];
#pragma unroll
    for (int i = 0; i < 8; ++i) { block[i] = left[i]; block[i + 8] = right[i]; }
#pragma unroll
    for (int i = 0; i < 8; ++i) out[i] = key[i];
    b3_compress(out, block, 0ull, B3_KEYED_HASH | B3_PARENT | (root ? B3_ROOT : 0u));
}

// keys: 16 words, the leaf key (0..8) then the node key (8..16), as the protocol derives them.
// One block per row of C; thread t hashes chunks t, t + blockDim.x, ... (1 KiB = 256 values
// each), then thread 0 joins the chunk values with BLAKE3's tree rule.
extern "C" __global__ void hash_rows(const int* c, unsigned int n, const unsigned int* keys,
                                     unsigned int* leaves) {
    __shared__ unsigned int chunk_cvs[256][8];  // n ≤ 65536 → at most 256 chunks per row
    const unsigned int row = blockIdx.x;
    const unsigned int* words = (const unsigned int*)(c + (unsigned long long)row * n);
    const unsigned int chunks = (n + 255) / 256;
    unsigned int key[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) key[i] = keys[i];
    for (unsigned int chunk = threadIdx.x; chunk < chunks; chunk += blockDim.x) {
        const unsigned int first = chunk * 256;
        const unsigned int count = min(256u, n - first);  // a multiple of 16 words
        const unsigned int blocks = count / 16;
        unsigned int cv[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) cv[i] = key[i];
        for (unsigned int b = 0; b < blocks; ++b) {
            unsigned int block[16];
            const uint4* src = (const uint4*)(words + first + b * 16);
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const uint4 x = src[q];
                block[4 * q] = x.x; block[4 * q + 1] = x.y;
                block[4 * q + 2] = x.z; block[4 * q + 3] = x.w;
            }
            unsigned int flags = B3_KEYED_HASH;
            if (b == 0) flags |= B3_CHUNK_START;
            if (b == blocks - 1) flags |= B3_CHUNK_END | (chunks == 1 ? B3_ROOT : 0u);
            b3_compress(cv, block, (unsigned long long)chunk, flags);
        }
#pragma unroll
        for (int i = 0; i < 8; ++i) chunk_cvs[chunk][i] = cv[i];
    }
    __syncthreads();
    if (threadIdx.x != 0) return;
    unsigned int out[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) out[i] = chunk_cvs[chunks - 1][i];
    if (chunks > 1) {
        // The reference implementation's chaining-value stack: merge complete subtrees as each
        // chunk (but the last) is added, then fold the stack into the last chunk, root last.
        unsigned int stack[9][8];
        int depth = 0;
        for (unsigned int i = 0; i + 1 < chunks; ++i) {
            unsigned int cv[8];
            for (int w = 0; w < 8; ++w) cv[w] = chunk_cvs[i][w];
            unsigned long long total = i + 1;
            while ((total & 1ull) == 0) {
                --depth;
                b3_parent(key, stack[depth], cv, false, cv);
                total >>= 1;
            }
            for (int w = 0; w < 8; ++w) stack[depth][w] = cv[w];
            ++depth;
        }
        while (depth > 0) {
            --depth;
            b3_parent(key, stack[depth], out, depth == 0, out);
        }
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) leaves[(unsigned long long)row * 8 + i] = out[i];
}

// One Merkle level: node i of `above` hashes nodes 2i and 2i+1 of `below` with the node key
// (keyed BLAKE3 of 64 bytes: one block, start + end + root); a lone last node moves up as is.
extern "C" __global__ void merkle_level(const unsigned int* below, unsigned int width,
                                        const unsigned int* keys, unsigned int* above) {
    const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned int up = (width + 1) / 2;
    if (i >= up) return;
    if (2 * i + 1 < width) {
        unsigned int block[16], cv[8];
#pragma unroll
        for (int w = 0; w < 16; ++w) block[w] = below[(unsigned long long)2 * i * 8 + w];
#pragma unroll
        for (int w = 0; w < 8; ++w) cv[w] = keys[8 + w];
        b3_compress(cv, block, 0ull, B3_KEYED_HASH | B3_CHUNK_START | B3_CHUNK_END | B3_ROOT);
#pragma unroll
        for (int w = 0; w < 8; ++w) above[(unsigned long long)i * 8 + w] = cv[w];
    } else {
#pragma unroll
        for (int w = 0; w < 8; ++w) above[(unsigned long long)i * 8 + w] = below[(unsigned long long)2 * i * 8 + w];
    }
}

// ---- measurement --------------------------------------------------------------------------

// Device-to-device copy, 16 bytes per thread per step, for the bandwidth figure.
extern "C" __global__ void copy16(const uint4* src, uint4* dst, unsigned long long count) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < count; i += (unsigned long long)gridDim.x * blockDim.x) {
        dst[i] = src[i];
    }
}

// The generator's test vectors, computed on the device (the GPU check compares them).
extern "C" __global__ void generator_vectors(unsigned long long* out,
                                             unsigned long long k0, unsigned long long k1,
                                             unsigned long long k2, unsigned long long k3) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    out[0] = gpumesh_word(0, 0, 0, 0, 0u, 0u, 0u);
    out[1] = gpumesh_word(0, 0, 0, 0, 1u, 0u, 0u);
    out[2] = gpumesh_word(k0, k1, k2, k3, 0u, 0u, 0u);
    out[3] = gpumesh_word(k0, k1, k2, k3, 0u, 1u, 0u);
    out[4] = gpumesh_word(k0, k1, k2, k3, 0u, 0u, 1u);
    out[5] = gpumesh_word(k0, k1, k2, k3, 1u, 16383u, 2047u);
}
