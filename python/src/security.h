/* Security settings and resource limits parsed from Python (security.c). */
#ifndef CRAFTPY_SECURITY_H
#define CRAFTPY_SECURITY_H

#include "craft/uv.h"

#define CRAFTPY_SECURITY_STRINGS 7

/* A struct craft_security whose strings are owned copies. */
struct craftpy_security {
    struct craft_security s;
    char *strings[CRAFTPY_SECURITY_STRINGS];
};

/* obj: None (plaintext) or the dict of craft.TLS / craft.Secret. 0, or -1 with an exception. */
int craftpy_security_parse(PyObject *obj, struct craftpy_security *out);
void craftpy_security_free(struct craftpy_security *sec);
/* obj: None or a dict of craft_uv_limits fields. 0, or -1 with an exception. */
int craftpy_limits_parse(PyObject *obj, struct craft_uv_limits *out);
/* Adds generate_secret, check_security and the SECURITY_* constants to the module. */
int craftpy_security_init(PyObject *m);

#endif
