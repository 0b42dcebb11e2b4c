/* Security settings and resource limits from Python (craft/security.h, docs/security.md):
 * craft.TLS and craft.Secret (python/craft/security.py) reach C as a dict, parsed here into a
 * struct craft_security whose strings this file owns; craft.Node's limits= dict into a struct
 * craft_uv_limits. Also the module functions generate_secret(path) and
 * check_security(dict, cluster_id). */
#include "craftpy.h"
#include "security.h"

#include <stdlib.h>
#include <string.h>

static const char *const string_keys[CRAFTPY_SECURITY_STRINGS] = {
    "cert_file",  "key_file",           "ca_file",          "secret_file",
    "passphrase", "accept_secret_file", "accept_passphrase"};

void craftpy_security_free(struct craftpy_security *sec)
{
    for (int i = 0; i < CRAFTPY_SECURITY_STRINGS; i++) {
        free(sec->strings[i]);
        sec->strings[i] = NULL;
    }
    memset(&sec->s, 0, sizeof sec->s);
}

static const char **field(struct craft_security *s, int i)
{
    const char **fields[CRAFTPY_SECURITY_STRINGS] = {
        &s->cert_file,  &s->key_file,           &s->ca_file,          &s->secret_file,
        &s->passphrase, &s->accept_secret_file, &s->accept_passphrase};
    return fields[i];
}

int craftpy_security_parse(PyObject *obj, struct craftpy_security *out)
{
    memset(out, 0, sizeof *out);
    if (obj == NULL || obj == Py_None) {
        return 0; /* plaintext */
    }
    if (!PyDict_Check(obj)) {
        PyErr_SetString(PyExc_TypeError,
                        "security must be craft.TLS(...), craft.Secret(...) or None");
        return -1;
    }
    PyObject *mode = PyDict_GetItemString(obj, "mode");
    long m = mode != NULL ? PyLong_AsLong(mode) : -1;
    if (m != CRAFT_SECURITY_PLAINTEXT && m != CRAFT_SECURITY_TLS && m != CRAFT_SECURITY_SECRET) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "security: unknown mode");
        }
        return -1;
    }
    out->s.mode = (int)m;
    PyObject *verify = PyDict_GetItemString(obj, "verify_id");
    if (verify != NULL) {
        int v = PyObject_IsTrue(verify);
        if (v < 0) {
            return -1;
        }
        out->s.verify_id = v != 0;
    }
    for (int i = 0; i < CRAFTPY_SECURITY_STRINGS; i++) {
        PyObject *v = PyDict_GetItemString(obj, string_keys[i]);
        if (v == NULL || v == Py_None) {
            continue;
        }
        PyObject *bytes = PyOS_FSPath(v); /* str or os.PathLike */
        const char *text = bytes != NULL && PyUnicode_Check(bytes) ? PyUnicode_AsUTF8(bytes) : NULL;
        if (text == NULL) {
            Py_XDECREF(bytes);
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_TypeError, "security: %s must be a str or a path",
                             string_keys[i]);
            }
            craftpy_security_free(out);
            return -1;
        }
        out->strings[i] = strdup(text);
        Py_DECREF(bytes);
        if (out->strings[i] == NULL) {
            craftpy_security_free(out);
            PyErr_NoMemory();
            return -1;
        }
        *field(&out->s, i) = out->strings[i];
    }
    return 0;
}

int craftpy_limits_parse(PyObject *obj, struct craft_uv_limits *out)
{
    static const char *const keys[] = {"max_pending",         "max_clients",
                                       "max_clients_per_ip",  "client_idle_timeout_ms",
                                       "max_client_requests", "read_budget"};
    memset(out, 0, sizeof *out);
    if (obj == NULL || obj == Py_None) {
        return 0;
    }
    if (!PyDict_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "limits must be a dict");
        return -1;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(obj, &pos, &key, &value)) {
        const char *k = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
        size_t i = 0;
        while (k != NULL && i < sizeof keys / sizeof keys[0] && strcmp(k, keys[i]) != 0) {
            i++;
        }
        if (k == NULL || i == sizeof keys / sizeof keys[0]) {
            PyErr_Format(PyExc_ValueError,
                         "limits: unknown key %R (known: max_pending, max_clients, "
                         "max_clients_per_ip, client_idle_timeout_ms, max_client_requests, "
                         "read_budget)",
                         key);
            return -1;
        }
        unsigned long long v = PyLong_AsUnsignedLongLong(value);
        if (PyErr_Occurred() || (i < 5 && v > UINT32_MAX)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "limits: %s must be an int >= 0 (0: the default)", k);
            return -1;
        }
        switch (i) {
        case 0: out->max_pending = (unsigned)v; break;
        case 1: out->max_clients = (unsigned)v; break;
        case 2: out->max_clients_per_ip = (unsigned)v; break;
        case 3: out->client_idle_timeout_ms = (unsigned)v; break;
        case 4: out->max_client_requests = (unsigned)v; break;
        default: out->read_budget = (size_t)v; break;
        }
    }
    return 0;
}

static PyObject *py_generate_secret(PyObject *self, PyObject *args)
{
    PyObject *path;
    if (!PyArg_ParseTuple(args, "O&", PyUnicode_FSConverter, &path)) {
        return NULL;
    }
    int rc = craft_secret_generate(PyBytes_AS_STRING(path));
    if (rc == CRAFT_EEXISTS) {
        PyErr_Format(PyExc_FileExistsError, "%s exists: a secret is never overwritten",
                     PyBytes_AS_STRING(path));
        Py_DECREF(path);
        return NULL;
    }
    if (rc != 0) {
        PyErr_Format(PyExc_OSError, "cannot write a secret to %s", PyBytes_AS_STRING(path));
        Py_DECREF(path);
        return NULL;
    }
    Py_DECREF(path);
    Py_RETURN_NONE;
}

static PyObject *py_check_security(PyObject *self, PyObject *args)
{
    PyObject *obj;
    unsigned long long cluster_id = 0;
    struct craftpy_security sec;
    char err[512] = "";
    int rc;
    if (!PyArg_ParseTuple(args, "O|K", &obj, &cluster_id) ||
        craftpy_security_parse(obj, &sec) != 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS;
    rc = craft_security_check(&sec.s, cluster_id, err, sizeof err);
    Py_END_ALLOW_THREADS;
    craftpy_security_free(&sec);
    if (rc != 0) {
        return craftpy_raise(CRAFT_EINVAL, err, 0, NULL);
    }
    Py_RETURN_NONE;
}

static PyMethodDef functions[] = {
    {"generate_secret", py_generate_secret, METH_VARARGS,
     "generate_secret(path): a new random cluster secret in a new file (mode 0600)"},
    {"check_security", py_check_security, METH_VARARGS,
     "check_security(settings, cluster_id=0): raises ConfigError when they cannot work"},
    {NULL, NULL, 0, NULL},
};

int craftpy_security_init(PyObject *m)
{
    if (PyModule_AddFunctions(m, functions) != 0 ||
        PyModule_AddIntConstant(m, "SECURITY_PLAINTEXT", CRAFT_SECURITY_PLAINTEXT) != 0 ||
        PyModule_AddIntConstant(m, "SECURITY_TLS", CRAFT_SECURITY_TLS) != 0 ||
        PyModule_AddIntConstant(m, "SECURITY_SECRET", CRAFT_SECURITY_SECRET) != 0) {
        return -1;
    }
    return 0;
}
