// CUDA twin of gpumesh_protocol::generator::word (generator.rs). Keep bit-identical.
__device__ __forceinline__ unsigned long long gpumesh_mix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// Eight int8 values (little-endian bytes) of `matrix`, row `row`, columns 8*block .. 8*block+8.
__device__ __forceinline__ unsigned long long gpumesh_word(
    const unsigned long long key0, const unsigned long long key1,
    const unsigned long long key2, const unsigned long long key3,
    unsigned int matrix, unsigned int row, unsigned int block) {
    const unsigned long long counter = ((unsigned long long)matrix << 48)
        | ((unsigned long long)(row & 0xFFFFFFu) << 24)
        | (unsigned long long)(block & 0xFFFFFFu);
    unsigned long long z = gpumesh_mix64(((counter * 0x9E3779B97F4A7C15ULL) ^ key0) + 0x9E3779B97F4A7C15ULL) + key1;
    return gpumesh_mix64(z ^ key2) ^ key3;
}
