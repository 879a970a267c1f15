/* What the proxyshim command needs to know about a target's ELF file before it runs it
 * under LD_PRELOAD: its word size and machine, whether the dynamic loader runs it at
 * all, whether the Go toolchain built it. Pure: it reads a buffer holding the file and
 * nothing else. The file is untrusted input: every offset, size and count is
 * bounds-checked, and a malformed file is reported, never read past. */
#ifndef PS_ELFINFO_H
#define PS_ELFINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ps_elf {
	unsigned char elf_class;  /* ELFCLASS32 or ELFCLASS64 */
	uint16_t machine;         /* e_machine (EM_X86_64, ...) */
	bool dynamic;             /* has a program interpreter (PT_INTERP) */
	bool go;                  /* a Go build ID note or Go build information */
};

enum ps_elf_result {
	PS_ELF_OK = 0,
	PS_ELF_NOT_ELF = -1,   /* no ELF magic: a script or some other file */
	PS_ELF_BAD = -2,       /* ELF magic, but headers that do not parse (or another
				* byte order than this machine's) */
};

/* Fills *out from the len bytes of a whole file at buf (all zero unless PS_ELF_OK). */
enum ps_elf_result ps_elf_inspect(const uint8_t *buf, size_t len, struct ps_elf *out);

#endif
