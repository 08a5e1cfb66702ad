/* generate.c - single-model generation loop (see generate.h). Mirrors the
 * loop of llama2.c's run.c: the prompt is forced, then each step feeds the
 * last token and samples the next; it differs in running the whole prompt as
 * one block. */
#include "model/generate.h"

#include <time.h>

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

const char *stop_reason_name(stop_reason_t r) {
    return r == STOP_EOS ? "eos" : r == STOP_LENGTH ? "length" : "context";
}

int generate(transformer_t *tf, const tokenizer_t *tok, sampler_t *smp, const int *prompt, int n_prompt,
             int max_new, int *out, gen_emit_fn emit, void *ud, gen_stats_t *st) {
    const model_config_t *c = transformer_config(tf);
    *st = (gen_stats_t){.n_prompt = n_prompt, .stop = STOP_LENGTH};
    if (n_prompt < 1 || n_prompt > c->seq_len) return -1;
    double t0 = now_s();
    /* greedy: the argmax comes from the backend's row statistics, so a GPU
     * moves one number per step instead of the vocabulary's logits */
    int greedy = sampler_is_greedy(smp);
    if (transformer_run(tf, prompt, n_prompt, 0, LOGITS_LAST)) return -1;
    st->prompt_s = now_s() - t0;
    t0 = now_s();
    int prev = prompt[n_prompt - 1], pos = n_prompt;
    while (st->n_gen < max_new) {
        int next;
        if (greedy) transformer_logits_stats(tf, 1, NULL, &next, NULL, NULL);
        else next = sampler_sample(smp, transformer_logits(tf));
        if (next == c->eos_id || next == c->bos_id) {
            st->stop = STOP_EOS;
            break;
        }
        if (out) out[st->n_gen] = next;
        st->n_gen++;
        size_t n;
        const char *piece = tokenizer_decode(tok, prev, next, &n);
        if (emit) emit(ud, next, piece, n);
        prev = next;
        if (st->n_gen == max_new) break;
        if (pos >= c->seq_len) {
            st->stop = STOP_CONTEXT;
            break;
        }
        if (transformer_run(tf, &next, 1, pos++, LOGITS_LAST)) return -1;
        st->n_steps++;
    }
    st->decode_s = now_s() - t0;
    return 0;
}
