// llama_logits: what llama.cpp computes on a GGUF file, for Tritium's round-trip check
// (benchmarks/gguf_parity.py and tests/e2e/test_llama_cpp_roundtrip.py).
//
//     llama_logits MODEL.gguf N_GEN TEXT
//
// Loads MODEL.gguf with llama.cpp (CPU, one thread), tokenizes TEXT with the file's own
// vocabulary (no BOS/EOS added), evaluates the prompt in one batch keeping the logits of every
// position, then decodes N_GEN tokens greedily through the KV cache. Prints, one record a line:
//
//     vocab V
//     tokens T0 T1 ...              the prompt's token ids
//     logits P L0 L1 ... L(V-1)     the logits after prompt position P (%.9g)
//     greedy G0 G1 ...              the N_GEN greedily decoded token ids
//
// Exit status: 0 on success, 2 on bad usage, 1 when llama.cpp refuses the file or fails.
// Written against llama.h of llama-cpp-python 0.3.36 (the pinned sdist of benchmarks/_ggml.py).
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static void quiet_log(enum ggml_log_level level, const char *text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static int fail(const char *what) {
    fprintf(stderr, "llama_logits: %s\n", what);
    return 1;
}

static void print_logits(const float *row, int pos, int n_vocab) {
    printf("logits %d", pos);
    for (int v = 0; v < n_vocab; v++) printf(" %.9g", row[v]);
    printf("\n");
}

static int argmax(const float *row, int n_vocab) {
    int best = 0;
    for (int v = 1; v < n_vocab; v++)
        if (row[v] > row[best]) best = v;
    return best;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.gguf N_GEN TEXT\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    char *end = nullptr;
    const long n_gen = strtol(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || n_gen < 0 || n_gen > 4096) {
        fprintf(stderr, "llama_logits: N_GEN must be an integer in 0..4096, not '%s'\n", argv[2]);
        return 2;
    }
    const std::string text = argv[3];

    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model *model = llama_model_load_from_file(path, mp);
    if (!model) return fail("llama.cpp could not load the model");
    const llama_vocab *vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    const int n_tok = -llama_tokenize(vocab, text.c_str(), (int32_t)text.size(), nullptr, 0,
                                      false, false);
    if (n_tok <= 0) return fail("the prompt tokenizes to nothing");
    std::vector<llama_token> tokens(n_tok);
    if (llama_tokenize(vocab, text.c_str(), (int32_t)text.size(), tokens.data(), n_tok, false,
                       false) != n_tok)
        return fail("tokenization failed");

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_tok + n_gen + 8);
    cp.n_batch = (uint32_t)n_tok;
    cp.n_ubatch = (uint32_t)n_tok;
    cp.n_threads = 1;
    cp.n_threads_batch = 1;
    llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) return fail("llama.cpp could not create a context");

    printf("vocab %d\ntokens", n_vocab);
    for (llama_token t : tokens) printf(" %d", t);
    printf("\n");

    llama_batch batch = llama_batch_init(n_tok, 0, 1);
    batch.n_tokens = n_tok;
    for (int i = 0; i < n_tok; i++) {
        batch.token[i] = tokens[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    if (llama_decode(ctx, batch) != 0) return fail("llama_decode failed on the prompt");
    for (int i = 0; i < n_tok; i++) {
        const float *row = llama_get_logits_ith(ctx, i);
        if (!row) return fail("no logits for a prompt position");
        print_logits(row, i, n_vocab);
    }
    llama_batch_free(batch);

    llama_token next = argmax(llama_get_logits_ith(ctx, n_tok - 1), n_vocab);
    printf("greedy");
    llama_batch one = llama_batch_init(1, 0, 1);
    for (long g = 0; g < n_gen; g++) {
        printf(" %d", next);
        if (g + 1 == n_gen) break;
        one.n_tokens = 1;
        one.token[0] = next;
        one.pos[0] = (llama_pos)(n_tok + g);
        one.n_seq_id[0] = 1;
        one.seq_id[0][0] = 0;
        one.logits[0] = 1;
        if (llama_decode(ctx, one) != 0) return fail("llama_decode failed on a generated token");
        next = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
    }
    printf("\n");
    llama_batch_free(one);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
