/* mtdata.h - the segments of the WMT (.sgm, "fake SGML") and IWSLT (.xml)
 * test-set files, in order, as sacreBLEU 2.x's dataset loader extracts them
 * (sacrebleu/dataset/fake_sgml.py; IWSLTXMLDataset is the same class), and
 * reading plain-text files of one segment per line as sacreBLEU's command
 * line does.
 *
 * What sacreBLEU does, and so what this does by default: every line that
 * begins with "<seg " gives one segment, the text between the first '>' and
 * the last "</seg>" on that line (re.sub(r"<seg.*?>(.*)</seg>.*?", r"\1")),
 * with surrounding whitespace stripped and every run of whitespace made one
 * space (Dataset._clean). It does NOT unescape XML entities, neither for
 * .sgm nor for .xml: "&amp;" stays "&amp;" in the reference text, and only
 * the 13a tokenizer turns &quot; &amp; &lt; &gt; back into characters when
 * it scores. MTDATA_UNESCAPE decodes entities for callers who want the
 * text itself (not what sacreBLEU scores against).
 *
 * Where sacreBLEU would silently produce something odd, this refuses the
 * file instead, with file:line: a <seg> line without its "</seg>" (sacreBLEU
 * would keep the raw tag in the text), two segments on one line, text after
 * "</seg>" (sacreBLEU would append it), a "<seg" that does not begin its
 * line (sacreBLEU would skip it), a segment outside <doc>...</doc>, nested
 * or unclosed <doc>, no segments at all, a NUL byte, invalid UTF-8. Segment
 * ids are not checked: sacreBLEU ignores them (WMT files restart them in
 * every document), the order of the lines is the order of the segments.
 */
#ifndef BILD_EVAL_MTDATA_H
#define BILD_EVAL_MTDATA_H

#include <stddef.h>
#include <stdio.h>

/* A list of NUL-terminated strings. */
typedef struct {
    char **s;
    size_t n;
} mtdata_lines_t;

void mtdata_lines_free(mtdata_lines_t *l);

enum { MTDATA_UNESCAPE = 1 }; /* flags of mtdata_extract */

/* Extracts the segments of a .sgm or .xml file's text buf[0..len) (name
 * is for messages). Returns 0 with the segments in *out (caller frees with
 * mtdata_lines_free), or -1 with "NAME:LINE: what is wrong" in err. */
int mtdata_extract(const char *name, const char *buf, size_t len, int flags, mtdata_lines_t *out, char *err,
                   size_t errlen);

/* mtdata_extract on a file. Messages name the file (and line). */
int mtdata_extract_file(const char *path, int flags, mtdata_lines_t *out, char *err, size_t errlen);

/* Reads a whole stream (no size limit but memory) as text: refuses a NUL
 * byte and invalid UTF-8 with "NAME:LINE: ..." in err. Returns the bytes,
 * NUL-terminated, length in *len; caller frees. NULL on failure. */
char *mtdata_read_stream(FILE *f, const char *name, size_t *len, char *err, size_t errlen);

/* Splits text into lines as Python's readlines() with newline="\n" does:
 * on "\n" only, a last line without "\n" counts, an empty text has no
 * lines. Each line loses its trailing whitespace (str.rstrip(), as
 * sacreBLEU's command line reads references and hypotheses). The strings
 * are copies; caller frees with mtdata_lines_free. Returns 0 or -1 (out of
 * memory). */
int mtdata_split_lines(const char *text, size_t len, mtdata_lines_t *out);

#endif
