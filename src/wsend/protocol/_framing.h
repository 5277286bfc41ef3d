/* Framing helpers shared by the compiled modules (wsend.protocol._speedups and
 * wsend.asyncio._fastpath): masking (RFC 6455 section 5.3), parsing the header of a whole
 * simple message, turning its payload into bytes or str, and building a frame.
 *
 * Every function is static inline: each file that includes this header gets its own copy.
 */
#ifndef WSEND_FRAMING_H
#define WSEND_FRAMING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WSEND_AVX2 1
#include <immintrin.h>

/* XOR n bytes (a multiple of 32) with a 32-byte key pattern; returns bytes done. */
__attribute__((target("avx2"))) static inline Py_ssize_t
mask_avx2(const unsigned char *src, unsigned char *dst, Py_ssize_t n, const unsigned char *k32)
{
    __m256i key = _mm256_loadu_si256((const __m256i *)k32);
    Py_ssize_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i word = _mm256_loadu_si256((const __m256i *)(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(word, key));
    }
    return i;
}

static int has_avx2 = -1;
#endif

/* XOR src with the repeated 4-byte key into dst (they may be the same buffer). */
static inline void
mask_into(const unsigned char *src, unsigned char *dst, Py_ssize_t n, const unsigned char *key)
{
    Py_ssize_t i = 0;
    unsigned char k[32];
    uint64_t key8;
    for (int j = 0; j < 32; j += 4) {
        memcpy(k + j, key, 4);
    }
#ifdef WSEND_AVX2
    if (has_avx2 < 0) {
        __builtin_cpu_init();
        has_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    if (has_avx2 && n >= 64) {
        i = mask_avx2(src, dst, n, k);
    }
#endif
    memcpy(&key8, k, 8);
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, src + i, 8);
        word ^= key8;
        memcpy(dst + i, &word, 8);
    }
    for (; i < n; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}

/* Where a whole simple message lies in a buffer (see simple_frame). */
typedef struct {
    unsigned char b0;          /* 0x81 (text) or 0x82 (binary) */
    Py_ssize_t start;          /* offset of the payload */
    Py_ssize_t length;         /* payload length */
    const unsigned char *key;  /* masking key, or NULL */
} SimpleFrame;

/* Parse the frame at buf[pos:end] if it is a whole simple message: FIN set, opcode text or
 * binary, no RSV bits, masked exactly when expect_mask, a payload of at most limit bytes
 * (limit < 0: none is), all of it in the buffer. Returns 1 and fills *f if so, 0 otherwise
 * (the frame is incomplete or of another kind: the general parser takes it). */
static inline int
simple_frame(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end, int expect_mask,
             long long limit, SimpleFrame *f)
{
    unsigned char b0, b1;
    unsigned long long length;
    Py_ssize_t hlen = 2;

    if (end - pos < 2) {
        return 0;
    }
    b0 = buf[pos];
    b1 = buf[pos + 1];
    if ((b0 != 0x81 && b0 != 0x82) || ((b1 & 0x80) != 0) != (expect_mask != 0)) {
        return 0;
    }
    length = b1 & 0x7F;
    if (length == 126) {
        if (end - pos < 4) {
            return 0;
        }
        length = ((unsigned long long)buf[pos + 2] << 8) | buf[pos + 3];
        hlen = 4;
    }
    else if (length == 127) {
        if (end - pos < 10) {
            return 0;
        }
        length = 0;
        for (int i = 2; i < 10; i++) {
            length = (length << 8) | buf[pos + i];
        }
        hlen = 10;
    }
    if (expect_mask) {
        hlen += 4;
    }
    if (limit < 0 || length > (unsigned long long)limit) {
        return 0;
    }
    if (end - pos < hlen || length > (unsigned long long)(end - pos - hlen)) {
        return 0;
    }
    f->b0 = b0;
    f->start = pos + hlen;
    f->length = (Py_ssize_t)length;
    f->key = expect_mask ? buf + pos + hlen - 4 : NULL;
    return 1;
}

/* Text payloads up to this size are unmasked on the stack before decoding. */
#define WSEND_STACK_TEXT 2048

/* The message of a simple frame: bytes (binary), or str (text, strictly decoded UTF-8).
 * Returns a new reference; NULL with an exception set on failure, or NULL with no exception
 * when the text isn't valid UTF-8 (the general parser then rejects it). */
static inline PyObject *
simple_message(const unsigned char *buf, const SimpleFrame *f)
{
    const unsigned char *payload = buf + f->start;
    Py_ssize_t n = f->length;
    PyObject *result;

    if (f->b0 == 0x82) {
        result = PyBytes_FromStringAndSize(NULL, n);
        if (result != NULL) {
            if (f->key != NULL) {
                mask_into(payload, (unsigned char *)PyBytes_AS_STRING(result), n, f->key);
            }
            else {
                memcpy(PyBytes_AS_STRING(result), payload, (size_t)n);
            }
        }
        return result;
    }
    if (f->key != NULL) {
        unsigned char stack[WSEND_STACK_TEXT];
        unsigned char *plain = n <= WSEND_STACK_TEXT ? stack : PyMem_Malloc((size_t)n);
        if (plain == NULL) {
            return PyErr_NoMemory();
        }
        mask_into(payload, plain, n, f->key);
        result = PyUnicode_DecodeUTF8((const char *)plain, n, NULL);
        if (plain != stack) {
            PyMem_Free(plain);
        }
    }
    else {
        result = PyUnicode_DecodeUTF8((const char *)payload, n, NULL);
    }
    if (result == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
    }
    return result;
}

/* Frames up to this payload size are built as one bytes object (header and payload copied
 * together); larger ones as a header and the payload apart (see frames.serialize_frame). */
#define WSEND_JOIN_FRAME 16384

/* Write a frame header for b0 (FIN, RSV and opcode bits), a payload of n bytes and an optional
 * masking key into out (at least 14 bytes); returns its size. */
static inline Py_ssize_t
frame_header(unsigned char *out, unsigned char b0, Py_ssize_t n, const unsigned char *key)
{
    unsigned char mbit = key != NULL ? 0x80 : 0;
    Py_ssize_t h;
    out[0] = b0;
    if (n < 126) {
        out[1] = mbit | (unsigned char)n;
        h = 2;
    }
    else if (n < 65536) {
        out[1] = mbit | 126;
        out[2] = (unsigned char)(n >> 8);
        out[3] = (unsigned char)n;
        h = 4;
    }
    else {
        unsigned long long len = (unsigned long long)n;
        out[1] = mbit | 127;
        for (int i = 9; i >= 2; i--) {
            out[i] = (unsigned char)len;
            len >>= 8;
        }
        h = 10;
    }
    if (key != NULL) {
        memcpy(out + h, key, 4);
        h += 4;
    }
    return h;
}

/* The size of a frame of n payload bytes, masked or not. */
static inline Py_ssize_t
frame_size(Py_ssize_t n, int masked)
{
    return n + (n < 126 ? 2 : n < 65536 ? 4 : 10) + (masked ? 4 : 0);
}

/* Build one frame whose payload is data[:n] (owner: the object holding it, or NULL).
 * Stores one or two new references in chunks and returns their number, or -1 with an
 * exception set. A masked frame, or one of at most WSEND_JOIN_FRAME payload bytes, is one
 * bytes object (header and payload together: masking copies the payload anyway); a larger
 * unmasked one is the header and the payload apart, the payload being owner itself when
 * there is one (no copy). A masked frame is built into `into` when given (a bytes object of
 * exactly the frame's size that nothing else holds), else into new bytes; the caller's
 * reference to `into` is always consumed. */
static inline int
build_frame(unsigned char b0, const char *data, Py_ssize_t n, PyObject *owner,
            const unsigned char *key, PyObject *into, PyObject **chunks)
{
    unsigned char header[14];
    Py_ssize_t h = frame_header(header, b0, n, key);
    PyObject *payload;

    if (into != NULL && (key == NULL || PyBytes_GET_SIZE(into) != h + n)) {
        Py_CLEAR(into);
    }
    if (n <= WSEND_JOIN_FRAME || key != NULL) {
        PyObject *frame = into != NULL ? into : PyBytes_FromStringAndSize(NULL, h + n);
        unsigned char *out;
        if (frame == NULL) {
            return -1;
        }
        out = (unsigned char *)PyBytes_AS_STRING(frame);
        memcpy(out, header, (size_t)h);
        if (key != NULL) {
            mask_into((const unsigned char *)data, out + h, n, key);
        }
        else if (n) {
            memcpy(out + h, data, (size_t)n);
        }
        chunks[0] = frame;
        return 1;
    }
    if (owner != NULL) {
        Py_INCREF(owner);
        payload = owner;
    }
    else {
        payload = PyBytes_FromStringAndSize(data, n);
        if (payload == NULL) {
            return -1;
        }
    }
    chunks[0] = PyBytes_FromStringAndSize((const char *)header, h);
    if (chunks[0] == NULL) {
        Py_DECREF(payload);
        return -1;
    }
    chunks[1] = payload;
    return 2;
}

#endif /* WSEND_FRAMING_H */
