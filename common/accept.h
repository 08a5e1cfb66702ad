/* accept.h - the rejection-sampling acceptance of speculative decoding
 * (Leviathan et al.), as a pure function of the two models' distributions
 * and a random stream. The policy runs it when the distributions reach the
 * coordinator; a large worker runs the same code when the small model's
 * distributions came to it over the data plane (proto/plane.h), and hands
 * back the verdict and the advanced stream, so that both paths give the
 * same tokens for the same seed.
 */
#ifndef BILD_ACCEPT_H
#define BILD_ACCEPT_H

/* xorshift64* after the caller's seeding; uniform in [0, 1). */
double accept_uniform(unsigned long long *rng);

/* Draws from max(0, w - minus) (minus may be NULL) over [0, V): weights that
 * need not be normalised. -1 if the total mass is zero. */
int accept_draw(unsigned long long *rng, const float *w, const float *minus, int V);

/* chunk[0, T): chunk[0] is the large model's own token, chunk[m] (m >= 1)
 * the small model's proposal, drawn from ps row m - 1 (rows of V); pl row
 * m - 1 is the large model's distribution at that position (T rows). Accepts
 * chunk[m] with probability min(1, pl(y) / ps(y)); at the first rejection m
 * draws from norm(max(0, pl - ps)) (from pl if that is empty). With every
 * proposal accepted and bonus set, draws a bonus token from pl row T - 1.
 * Sets *m_rej (0: all accepted) and *z (the drawn token, -1 if none).
 * Returns 0, or -1 if a bonus row is all zeros. */
int accept_chunk(const int *chunk, int T, const float *pl, const float *ps, int V, int bonus,
                 unsigned long long *rng, int *m_rej, int *z);

#endif
