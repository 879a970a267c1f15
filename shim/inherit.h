/* Sockets that cross exec: the parent's state travels in PROXYSHIM_INHERIT, added to
 * the child's environment by the exec hooks and removed on arrival. Each entry names
 * a socket by SO_COOKIE and is accepted only for a socket the child really holds whose
 * real peer is trusted, so a forged value cannot set an address. */
#ifndef PS_INHERIT_H
#define PS_INHERIT_H

#include <stddef.h>
#include "config.h"

#define PS_INHERIT_VAR "PROXYSHIM_INHERIT"
#define PS_INHERIT_MAX 64     /* sockets carried across one exec */
#define PS_INHERIT_LEN (sizeof(PS_INHERIT_VAR) + PS_INHERIT_MAX * 113)
#define PS_ENV_MAX 65536      /* larger environments are passed on unchanged */

/* Number of entries in envp (NULL counts as empty). */
size_t ps_env_count(char *const *envp);

/* The environment for a child about to be exec'd: envp without any PROXYSHIM_INHERIT,
 * plus one describing the tracked sockets it inherits. out has room for cap pointers,
 * var for PS_INHERIT_LEN bytes. Returns envp itself when there is nothing to carry. */
char *const *ps_child_env(char *const *envp, char **out, size_t cap, char *var);

/* At load: adopts the state carried from the parent and takes the header off any
 * connection from a trusted proxy that arrived without state (inetd, systemd
 * Accept=yes, socat EXEC). c is NULL when the shim is inert. */
void ps_inherit_init(const struct ps_config *c);

#endif
