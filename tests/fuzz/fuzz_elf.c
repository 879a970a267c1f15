/* libFuzzer: the ELF reader the command runs on its target (an untrusted file) on
 * arbitrary bytes, in a buffer of exactly their size, so ASan sees any read past it. */
#include "elfinfo.h"

#include <elf.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ps_elf e;
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	enum ps_elf_result r = ps_elf_inspect(copy, size, &e);
	free(copy);
	/* A refused file reports no facts; an accepted one a class it knows. */
	if (r != PS_ELF_OK && (e.go || e.dynamic || e.elf_class))
		abort();
	if (r == PS_ELF_OK && e.elf_class != ELFCLASS32 && e.elf_class != ELFCLASS64)
		abort();
	return 0;
}
