/* TLS 1.3 with OpenSSL through memory BIOs (see tls.h), for the two authenticated modes of
 * craft/security.h.
 *
 * Certificates: both sides present one and verify the other's against the configured CAs
 * (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT on both ends: mutual TLS). Host names are
 * not checked: members are dialed by address and identified by the server id their certificate
 * names, which the transport compares with the id they claim (verify_id).
 *
 * Cluster secret: TLS 1.3 with an external PSK (RFC 8446 section 4.2.11), in the psk_dhe_ke
 * mode OpenSSL uses by default, so every connection also gets fresh (EC)DHE keys: recording the
 * traffic and later learning the secret does not decrypt it. The PSK is
 * HKDF-SHA256(secret, salt "craft psk v1", info "craft psk" || cluster id), and its identity
 * on the wire is "craft1-" followed by 8 bytes of HKDF(..., info "craft key id" || cluster id)
 * in hex: it tells a receiver which of its (at most two) secrets the peer uses, and nothing
 * about the secret. A passphrase is first stretched with scrypt (N = 2^15, r = 8, p = 1), since
 * an eavesdropper who sees a PSK binder can test guesses offline. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "uv/tls.h"

#define PSK_SIZE 32
#define SECRET_MIN 16
#define SECRET_MAX 4096
#define PASSPHRASE_MIN 8
#define IDENTITY_MAX 32
#define URI_PREFIX "craft:server:"
#define CN_PREFIX "craft-server-"

struct secret {
    uint8_t psk[PSK_SIZE];
    char identity[IDENTITY_MAX];
};

struct craft__tls_ctx {
    SSL_CTX *ssl;
    int refs;
    int mode;
    bool verify_id;
    struct secret secrets[2]; /* [0] connects; both are accepted */
    unsigned n_secrets;
    char describe[96];
};

struct craft__tls {
    struct craft__tls_ctx *x;
    SSL *ssl;
    BIO *in, *out; /* owned by ssl */
    bool established;
    char identity[IDENTITY_MAX]; /* the secret mode: the PSK identity used */
};

static void set_err(char *err, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t size, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || size == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
}

/* The first error OpenSSL queued on this thread, as "reason" (the queue is emptied). */
static const char *ssl_reason(char *buf, size_t size)
{
    unsigned long e = ERR_get_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, size, "%s", r != NULL ? r : e != 0 ? "error" : "no further detail");
    ERR_clear_error();
    return buf;
}

/* --- Keys of the secret mode ----------------------------------------------------------------- */

static int hkdf(const uint8_t *ikm, size_t n, const char *label, uint64_t cluster_id,
                uint8_t *out, size_t out_size)
{
    static const char salt[] = "craft psk v1";
    uint8_t info[64];
    size_t k = strlen(label);
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[5];
    int ok;

    memcpy(info, label, k);
    for (int i = 0; i < 8; i++) {
        info[k + (size_t)i] = (uint8_t)(cluster_id >> (56 - 8 * i));
    }
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, n);
    params[2] =
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, sizeof salt - 1);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, k + 8);
    params[4] = OSSL_PARAM_construct_end();
    ok = kctx != NULL && EVP_KDF_derive(kctx, out, out_size, params) == 1;
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return ok ? 0 : CRAFT_ENOMEM;
}

static int scrypt(const char *pass, size_t n, uint8_t out[PSK_SIZE])
{
    static const char salt[] = "craft cluster passphrase v1";
    uint64_t N = 1u << 15, maxmem = 64u * 1024u * 1024u;
    uint32_t r = 8, p = 1;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    EVP_KDF_CTX *kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[7];
    int ok;

    params[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)pass, n);
    params[1] =
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, sizeof salt - 1);
    params[2] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &N);
    params[3] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r);
    params[4] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p);
    params[5] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
    params[6] = OSSL_PARAM_construct_end();
    ok = kctx != NULL && EVP_KDF_derive(kctx, out, PSK_SIZE, params) == 1;
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return ok ? 0 : CRAFT_ENOMEM;
}

static int read_secret_file(const char *path, uint8_t *buf, size_t *n, char *err, size_t es)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got;
    size_t len = 0;

    if (fd < 0) {
        set_err(err, es, "cannot read the secret file %s: %s", path, strerror(errno));
        return CRAFT_EINVAL;
    }
    while (len <= SECRET_MAX && (got = read(fd, buf + len, SECRET_MAX + 1 - len)) > 0) {
        len += (size_t)got;
    }
    close(fd);
    if (len > SECRET_MAX) {
        set_err(err, es, "the secret file %s is longer than %d bytes", path, SECRET_MAX);
        return CRAFT_EINVAL;
    }
    /* A secret written by a text editor or `echo` ends with a newline: not part of it. */
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                       buf[len - 1] == '\t')) {
        len--;
    }
    if (len < SECRET_MIN) {
        set_err(err, es,
                "the secret file %s holds %zu bytes; a cluster secret needs at least %d "
                "(craft_secret_generate makes one)",
                path, len, SECRET_MIN);
        return CRAFT_EINVAL;
    }
    *n = len;
    return 0;
}

/* One secret, from a file or a passphrase, into its PSK and identity. */
static int load_secret(const char *file, const char *pass, uint64_t cluster_id, struct secret *s,
                       char *err, size_t es)
{
    uint8_t buf[SECRET_MAX + 1], stretched[PSK_SIZE], id[8];
    const uint8_t *ikm = buf;
    size_t n = 0;
    int rc;

    if (file != NULL) {
        rc = read_secret_file(file, buf, &n, err, es);
    } else {
        n = strlen(pass);
        rc = 0;
        if (n < PASSPHRASE_MIN) {
            set_err(err, es, "a passphrase needs at least %d characters (a generated secret "
                             "file is better)", PASSPHRASE_MIN);
            rc = CRAFT_EINVAL;
        } else {
            rc = scrypt(pass, n, stretched);
            ikm = stretched;
            n = PSK_SIZE;
        }
    }
    if (rc == 0) {
        rc = hkdf(ikm, n, "craft psk", cluster_id, s->psk, PSK_SIZE);
    }
    if (rc == 0) {
        rc = hkdf(ikm, n, "craft key id", cluster_id, id, sizeof id);
    }
    if (rc == 0) {
        snprintf(s->identity, sizeof s->identity, "craft1-%02x%02x%02x%02x%02x%02x%02x%02x",
                 id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]);
    } else if (rc == CRAFT_ENOMEM) {
        set_err(err, es, "deriving the key from the cluster secret failed");
    }
    OPENSSL_cleanse(buf, sizeof buf);
    OPENSSL_cleanse(stretched, sizeof stretched);
    return rc;
}

static SSL_SESSION *psk_session(SSL *ssl, const uint8_t *psk)
{
    static const unsigned char aes128gcm_sha256[] = {0x13, 0x01};
    const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, aes128gcm_sha256);
    SSL_SESSION *sess = SSL_SESSION_new();

    if (cipher == NULL || sess == NULL || !SSL_SESSION_set1_master_key(sess, psk, PSK_SIZE) ||
        !SSL_SESSION_set_cipher(sess, cipher) ||
        !SSL_SESSION_set_protocol_version(sess, TLS1_3_VERSION)) {
        SSL_SESSION_free(sess);
        return NULL;
    }
    return sess;
}

/* The connecting side offers the current secret. OpenSSL takes the session's reference. */
static int use_psk(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
                   SSL_SESSION **sess)
{
    struct craft__tls *s = SSL_get_app_data(ssl);
    const struct secret *k = &s->x->secrets[0];

    *sess = NULL;
    if (md != NULL && EVP_MD_get_type(md) != NID_sha256) {
        return 1; /* the PSK is for SHA-256 suites only (the context allows no others) */
    }
    *sess = psk_session(ssl, k->psk);
    if (*sess == NULL) {
        return 0;
    }
    *id = (const unsigned char *)k->identity;
    *idlen = strlen(k->identity);
    snprintf(s->identity, sizeof s->identity, "%s", k->identity);
    return 1;
}

/* The accepting side finds the secret the identity names; an unknown one gets no PSK, and
 * with no certificate to fall back on the handshake fails. */
static int find_psk(SSL *ssl, const unsigned char *id, size_t idlen, SSL_SESSION **sess)
{
    struct craft__tls *s = SSL_get_app_data(ssl);

    *sess = NULL;
    for (unsigned i = 0; i < s->x->n_secrets; i++) {
        const struct secret *k = &s->x->secrets[i];
        if (idlen == strlen(k->identity) && memcmp(id, k->identity, idlen) == 0) {
            *sess = psk_session(ssl, k->psk);
            snprintf(s->identity, sizeof s->identity, "%s", k->identity);
            return *sess != NULL;
        }
    }
    return 1;
}

/* --- Certificates ---------------------------------------------------------------------------- */

/* "<prefix><digits>" exactly, digits a nonzero uint64. */
static bool parse_id(const unsigned char *s, size_t n, const char *prefix, craft_id *out)
{
    size_t p = strlen(prefix);
    craft_id v = 0;

    if (n <= p || memcmp(s, prefix, p) != 0 || n - p > 20) {
        return false;
    }
    for (size_t i = p; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10) {
            return false;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return v != 0;
}

/* The server id a certificate names: URI SANs "craft:server:<id>", else CNs
 * "craft-server-<id>". False when it names two different ids. */
static bool cert_id(X509 *cert, craft_id *out)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    X509_NAME *subject = X509_get_subject_name(cert);
    craft_id found = 0, v;
    bool ok = true;

    for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type == GEN_URI &&
            parse_id(ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
                     (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier), URI_PREFIX,
                     &v)) {
            ok = ok && (found == 0 || found == v);
            found = v;
        }
    }
    GENERAL_NAMES_free(names);
    for (int i = -1; found == 0 && subject != NULL &&
                     (i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) >= 0;) {
        const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
        if (parse_id(ASN1_STRING_get0_data(cn), (size_t)ASN1_STRING_length(cn), CN_PREFIX, &v)) {
            found = v;
        }
    }
    *out = found;
    return ok;
}

static int load_certificates(struct craft__tls_ctx *x, const struct craft_security *s,
                             char *err, size_t es)
{
    char why[160];
    STACK_OF(X509_OBJECT) *objs;

    if (s->cert_file == NULL || s->key_file == NULL || s->ca_file == NULL) {
        set_err(err, es, "TLS needs cert_file, key_file and ca_file");
        return CRAFT_EINVAL;
    }
    if (SSL_CTX_use_certificate_chain_file(x->ssl, s->cert_file) != 1) {
        set_err(err, es, "cannot load the certificate %s: %s", s->cert_file,
                ssl_reason(why, sizeof why));
        return CRAFT_EINVAL;
    }
    if (SSL_CTX_use_PrivateKey_file(x->ssl, s->key_file, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH) {
            set_err(err, es, "the private key %s does not match the certificate %s",
                    s->key_file, s->cert_file);
            ERR_clear_error();
        } else {
            set_err(err, es, "cannot load the private key %s: %s", s->key_file,
                    ssl_reason(why, sizeof why));
        }
        return CRAFT_EINVAL;
    }
    if (SSL_CTX_check_private_key(x->ssl) != 1) {
        set_err(err, es, "the private key %s does not match the certificate %s", s->key_file,
                s->cert_file);
        ERR_clear_error();
        return CRAFT_EINVAL;
    }
    if (SSL_CTX_load_verify_file(x->ssl, s->ca_file) != 1) {
        set_err(err, es, "cannot load the CA file %s: %s", s->ca_file,
                ssl_reason(why, sizeof why));
        return CRAFT_EINVAL;
    }
    objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(x->ssl));
    if (objs == NULL || sk_X509_OBJECT_num(objs) == 0) {
        set_err(err, es, "the CA file %s holds no certificate", s->ca_file);
        return CRAFT_EINVAL;
    }
    SSL_CTX_set_verify(x->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return 0;
}

/* --- Contexts -------------------------------------------------------------------------------- */

int craft__tls_ctx_new(const struct craft_security *s, uint64_t cluster_id,
                       struct craft__tls_ctx **out, char *err, size_t es)
{
    struct craft__tls_ctx *x;
    int rc = 0;

    *out = NULL;
    if (s == NULL ||
        (s->mode != CRAFT_SECURITY_TLS && s->mode != CRAFT_SECURITY_SECRET)) {
        set_err(err, es, "unknown security mode");
        return CRAFT_EINVAL;
    }
    x = calloc(1, sizeof *x);
    if (x == NULL) {
        return CRAFT_ENOMEM;
    }
    x->refs = 1;
    x->mode = s->mode;
    x->verify_id = s->mode == CRAFT_SECURITY_TLS && s->verify_id;
    ERR_clear_error();
    x->ssl = SSL_CTX_new(TLS_method());
    if (x->ssl == NULL) {
        free(x);
        return CRAFT_ENOMEM;
    }
    SSL_CTX_set_app_data(x->ssl, x);
    /* TLS 1.3 only; no session tickets or resumption: every connection authenticates. */
    SSL_CTX_set_min_proto_version(x->ssl, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(x->ssl, TLS1_3_VERSION);
    SSL_CTX_set_options(x->ssl, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(x->ssl, 0);
    SSL_CTX_set_session_cache_mode(x->ssl, SSL_SESS_CACHE_OFF);
    if (s->mode == CRAFT_SECURITY_TLS) {
        rc = load_certificates(x, s, err, es);
        snprintf(x->describe, sizeof x->describe, "TLS 1.3 with certificates%s",
                 x->verify_id ? ", server ids verified" : "");
    } else {
        if ((s->secret_file == NULL) == (s->passphrase == NULL)) {
            set_err(err, es, "the secret mode needs one of secret_file and passphrase");
            rc = CRAFT_EINVAL;
        }
        if (rc == 0) {
            rc = load_secret(s->secret_file, s->passphrase, cluster_id, &x->secrets[0], err, es);
            x->n_secrets = 1;
        }
        if (rc == 0 && s->accept_secret_file != NULL && s->accept_passphrase != NULL) {
            set_err(err, es, "give at most one of accept_secret_file and accept_passphrase");
            rc = CRAFT_EINVAL;
        }
        if (rc == 0 && (s->accept_secret_file != NULL || s->accept_passphrase != NULL)) {
            rc = load_secret(s->accept_secret_file, s->accept_passphrase, cluster_id,
                             &x->secrets[1], err, es);
            x->n_secrets = 2;
        }
        if (rc == 0 && SSL_CTX_set_ciphersuites(
                           x->ssl, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256") != 1) {
            rc = CRAFT_ENOMEM;
        }
        SSL_CTX_set_psk_use_session_callback(x->ssl, use_psk);
        SSL_CTX_set_psk_find_session_callback(x->ssl, find_psk);
        SSL_CTX_set_verify(x->ssl, SSL_VERIFY_NONE, NULL);
        snprintf(x->describe, sizeof x->describe, "TLS 1.3 with a cluster secret%s",
                 x->n_secrets == 2 ? " (and a second one accepted)" : "");
    }
    if (rc != 0) {
        craft__tls_ctx_unref(x);
        return rc;
    }
    *out = x;
    return 0;
}

void craft__tls_ctx_ref(struct craft__tls_ctx *x)
{
    __atomic_add_fetch(&x->refs, 1, __ATOMIC_RELAXED);
}

void craft__tls_ctx_unref(struct craft__tls_ctx *x)
{
    if (x == NULL || __atomic_sub_fetch(&x->refs, 1, __ATOMIC_ACQ_REL) > 0) {
        return;
    }
    SSL_CTX_free(x->ssl);
    OPENSSL_cleanse(x->secrets, sizeof x->secrets);
    free(x);
}

int craft__tls_ctx_mode(const struct craft__tls_ctx *x)
{
    return x->mode;
}

bool craft__tls_ctx_verify_id(const struct craft__tls_ctx *x)
{
    return x->verify_id;
}

bool craft__tls_ctx_own_id(const struct craft__tls_ctx *x, craft_id *id)
{
    X509 *own = x->mode == CRAFT_SECURITY_TLS ? SSL_CTX_get0_certificate(x->ssl) : NULL;
    *id = 0;
    return own == NULL || cert_id(own, id);
}

const char *craft__tls_ctx_describe(const struct craft__tls_ctx *x)
{
    return x->describe;
}

/* --- Connections ----------------------------------------------------------------------------- */

struct craft__tls *craft__tls_new(struct craft__tls_ctx *x, bool server)
{
    struct craft__tls *s = calloc(1, sizeof *s);

    if (s == NULL) {
        return NULL;
    }
    ERR_clear_error();
    s->ssl = SSL_new(x->ssl);
    s->in = BIO_new(BIO_s_mem());
    s->out = BIO_new(BIO_s_mem());
    if (s->ssl == NULL || s->in == NULL || s->out == NULL) {
        BIO_free(s->in);
        BIO_free(s->out);
        SSL_free(s->ssl);
        free(s);
        ERR_clear_error();
        return NULL;
    }
    /* An empty BIO means "more later", not the end of the stream. */
    BIO_set_mem_eof_return(s->in, -1);
    BIO_set_mem_eof_return(s->out, -1);
    SSL_set_bio(s->ssl, s->in, s->out);
    SSL_set_app_data(s->ssl, s);
    if (server) {
        SSL_set_accept_state(s->ssl);
    } else {
        SSL_set_connect_state(s->ssl);
    }
    craft__tls_ctx_ref(x);
    s->x = x;
    return s;
}

void craft__tls_free(struct craft__tls *s)
{
    if (s == NULL) {
        return;
    }
    SSL_free(s->ssl);
    craft__tls_ctx_unref(s->x);
    free(s);
}

int craft__tls_push(struct craft__tls *s, const void *data, size_t n)
{
    while (n > 0) {
        int chunk = n > INT32_MAX ? INT32_MAX : (int)n;
        int w = BIO_write(s->in, data, chunk);
        if (w <= 0) {
            ERR_clear_error();
            return CRAFT_ENOMEM;
        }
        data = (const uint8_t *)data + w;
        n -= (size_t)w;
    }
    return 0;
}

/* Why a handshake failed, with the certificate verification's own reason when there is one
 * (an unknown CA, an expired certificate, ...). */
static void handshake_error(struct craft__tls *s, char *err, size_t es)
{
    char why[160];
    long v = SSL_get_verify_result(s->ssl);

    ssl_reason(why, sizeof why);
    if (v != X509_V_OK) {
        set_err(err, es, "TLS handshake failed: %s: %s", why, X509_verify_cert_error_string(v));
    } else if (s->x->mode == CRAFT_SECURITY_SECRET && s->identity[0] == '\0' &&
               SSL_is_server(s->ssl)) {
        set_err(err, es, "TLS handshake failed: %s (no known cluster secret was offered)", why);
    } else {
        set_err(err, es, "TLS handshake failed: %s", why);
    }
}

int craft__tls_handshake(struct craft__tls *s, char *err, size_t es)
{
    int rc;

    if (s->established) {
        return 1;
    }
    ERR_clear_error();
    rc = SSL_do_handshake(s->ssl);
    if (rc == 1) {
        s->established = true;
        return 1;
    }
    switch (SSL_get_error(s->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0;
    default:
        handshake_error(s, err, es);
        return CRAFT_EIO;
    }
}

bool craft__tls_established(const struct craft__tls *s)
{
    return s->established;
}

int craft__tls_read(struct craft__tls *s, void *buf, size_t cap, size_t *n, char *err, size_t es)
{
    char why[160];
    size_t got = 0;

    *n = 0;
    ERR_clear_error();
    if (SSL_read_ex(s->ssl, buf, cap, &got) == 1) {
        *n = got;
        return 0;
    }
    switch (SSL_get_error(s->ssl, 0)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        return CRAFT_ENOCONN;
    default:
        set_err(err, es, "TLS: %s", ssl_reason(why, sizeof why));
        return CRAFT_EIO;
    }
}

int craft__tls_write(struct craft__tls *s, const void *data, size_t n)
{
    size_t written = 0;

    if (n == 0) {
        return 0;
    }
    ERR_clear_error();
    /* A memory BIO takes everything: the write is whole or it failed. */
    if (SSL_write_ex(s->ssl, data, n, &written) != 1 || written != n) {
        ERR_clear_error();
        return CRAFT_EIO;
    }
    return 0;
}

size_t craft__tls_output_size(const struct craft__tls *s)
{
    return BIO_ctrl_pending(s->out);
}

int craft__tls_take_output(struct craft__tls *s, struct craft_wire_buf *out)
{
    size_t n = BIO_ctrl_pending(s->out);

    while (n > 0) {
        int chunk = n > INT32_MAX ? INT32_MAX : (int)n;
        int rc = craft_wire_buf_reserve(out, (size_t)chunk);
        int got;
        if (rc != 0) {
            return rc;
        }
        got = BIO_read(s->out, out->base + out->len, chunk);
        if (got <= 0) {
            ERR_clear_error();
            return CRAFT_EIO;
        }
        out->len += (size_t)got;
        n -= (size_t)got;
    }
    return 0;
}

bool craft__tls_peer_id(const struct craft__tls *s, craft_id *id)
{
    X509 *peer = SSL_get0_peer_certificate(s->ssl);

    *id = 0;
    return peer == NULL || cert_id(peer, id);
}

bool craft__tls_still_trusted(const struct craft__tls *s, const struct craft__tls_ctx *x,
                              char *why, size_t ws)
{
    if (!s->established) {
        return true; /* judged when its handshake completes */
    }
    if (s->x->mode != x->mode) {
        set_err(why, ws, "the security mode changed");
        return false;
    }
    if (x->mode == CRAFT_SECURITY_SECRET) {
        for (unsigned i = 0; i < x->n_secrets; i++) {
            if (strcmp(s->identity, x->secrets[i].identity) == 0) {
                return true;
            }
        }
        set_err(why, ws, "the cluster secret it used is no longer accepted");
        return false;
    }
    X509 *peer = SSL_get0_peer_certificate(s->ssl);
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(s->ssl);
    X509_STORE_CTX *v = X509_STORE_CTX_new();
    bool ok = false;
    if (peer != NULL && v != NULL &&
        X509_STORE_CTX_init(v, SSL_CTX_get_cert_store(x->ssl), peer, chain) == 1) {
        ok = X509_verify_cert(v) == 1;
        if (!ok) {
            set_err(why, ws, "its certificate is no longer trusted: %s",
                    X509_verify_cert_error_string(X509_STORE_CTX_get_error(v)));
        }
    } else {
        set_err(why, ws, "its certificate cannot be checked again");
    }
    X509_STORE_CTX_free(v);
    ERR_clear_error();
    return ok;
}

/* --- Public helpers -------------------------------------------------------------------------- */

int craft_security_check(const struct craft_security *s, uint64_t cluster_id, char *err,
                         size_t err_size)
{
    struct craft__tls_ctx *x;
    int rc;

    if (s != NULL && s->mode == CRAFT_SECURITY_PLAINTEXT) {
        return 0;
    }
    rc = craft__tls_ctx_new(s, cluster_id, &x, err, err_size);
    if (rc == CRAFT_ENOMEM) {
        set_err(err, err_size, "out of memory");
    }
    craft__tls_ctx_unref(rc == 0 ? x : NULL);
    return rc == 0 ? 0 : CRAFT_EINVAL;
}

int craft_secret_generate(const char *path)
{
    uint8_t raw[32];
    unsigned char text[64];
    int n, fd;
    bool ok;

    if (path == NULL) {
        return CRAFT_EINVAL;
    }
    if (RAND_bytes(raw, sizeof raw) != 1) {
        ERR_clear_error();
        return CRAFT_EIO;
    }
    n = EVP_EncodeBlock(text, raw, sizeof raw);
    OPENSSL_cleanse(raw, sizeof raw);
    text[n++] = '\n';
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        OPENSSL_cleanse(text, sizeof text);
        return errno == EEXIST ? CRAFT_EEXISTS : CRAFT_EIO;
    }
    ok = write(fd, text, (size_t)n) == n && fsync(fd) == 0;
    OPENSSL_cleanse(text, sizeof text);
    if (close(fd) != 0 || !ok) {
        unlink(path);
        return CRAFT_EIO;
    }
    return 0;
}

const char *craft_security_mode_name(int mode)
{
    switch (mode) {
    case CRAFT_SECURITY_PLAINTEXT:
        return "plaintext";
    case CRAFT_SECURITY_TLS:
        return "tls";
    case CRAFT_SECURITY_SECRET:
        return "secret";
    default:
        return "unknown";
    }
}
