#include "elfinfo.h"

#include <elf.h>
#include <string.h>

/* The Go linker's facts (cmd/link, debug/buildinfo): a note owned by "Go" of this type
 * holds the build ID; the build information starts with this magic, 16-byte aligned,
 * in .go.buildinfo, which is in the first writable segment. */
#define GO_NOTE_BUILDID 4
static const char go_magic[] = "\xff Go buildinf:";
#define GO_MAGIC_LEN (sizeof(go_magic) - 1)

struct file {
	const uint8_t *p;
	size_t len;
	bool is64;
};

/* The n bytes at off, or NULL unless they all lie inside the file. */
static const uint8_t *at(const struct file *f, uint64_t off, uint64_t n)
{
	if (off > f->len || n > f->len - off)
		return NULL;
	return f->p + off;
}

/* Entry i of a table at base with entries of entsize bytes, n of them read. */
static const uint8_t *entry(const struct file *f, uint64_t base, uint64_t i,
			    uint64_t entsize, uint64_t n)
{
	if (base > f->len || i * entsize > f->len - base)  /* i, entsize < 2^32 */
		return NULL;
	return at(f, base + i * entsize, n);
}

struct hdr {
	uint64_t phoff, shoff;
	uint32_t phentsize, shentsize, phnum, shnum, shstrndx;
};
struct seg {
	uint32_t type, flags;
	uint64_t off, filesz, align;
};
struct sec {
	uint32_t name, type, link, info;
	uint64_t off, size, align;
};

/* Both classes read into one shape (byte order checked to be the host's). */
#define COPY_SEG(T)                                                                \
	do {                                                                       \
		T e;                                                               \
		memcpy(&e, p, sizeof(e));                                          \
		*s = (struct seg){e.p_type, e.p_flags, e.p_offset, e.p_filesz, e.p_align}; \
	} while (0)
#define COPY_SEC(T)                                                                \
	do {                                                                       \
		T e;                                                               \
		memcpy(&e, p, sizeof(e));                                          \
		*s = (struct sec){e.sh_name, e.sh_type, e.sh_link, e.sh_info,      \
				  e.sh_offset, e.sh_size, e.sh_addralign};          \
	} while (0)

static bool segment(const struct file *f, const struct hdr *h, uint32_t i, struct seg *s)
{
	size_t n = f->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	const uint8_t *p = entry(f, h->phoff, i, h->phentsize, n);
	if (!p)
		return false;
	if (f->is64)
		COPY_SEG(Elf64_Phdr);
	else
		COPY_SEG(Elf32_Phdr);
	return true;
}

static bool section(const struct file *f, const struct hdr *h, uint32_t i, struct sec *s)
{
	size_t n = f->is64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr);
	const uint8_t *p = entry(f, h->shoff, i, h->shentsize, n);
	if (!p)
		return false;
	if (f->is64)
		COPY_SEC(Elf64_Shdr);
	else
		COPY_SEC(Elf32_Shdr);
	return true;
}

static bool read_header(const struct file *f, struct hdr *h)
{
	if (f->is64) {
		Elf64_Ehdr e;
		memcpy(&e, f->p, sizeof(e));
		*h = (struct hdr){e.e_phoff, e.e_shoff, e.e_phentsize, e.e_shentsize,
				  e.e_phnum, e.e_shnum, e.e_shstrndx};
	} else {
		Elf32_Ehdr e;
		memcpy(&e, f->p, sizeof(e));
		*h = (struct hdr){e.e_phoff, e.e_shoff, e.e_phentsize, e.e_shentsize,
				  e.e_phnum, e.e_shnum, e.e_shstrndx};
	}
	size_t ph = f->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	size_t sh = f->is64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr);
	if (!h->shoff)
		h->shnum = 0, h->shstrndx = SHN_UNDEF;
	else if (h->shentsize < sh)
		return false;
	/* Counts too large for the header live in section 0 (gABI extended numbering). */
	struct sec s0;
	if (h->shoff && (h->shnum == 0 || h->phnum == PN_XNUM || h->shstrndx == SHN_XINDEX)) {
		if (!section(f, h, 0, &s0))
			return false;
		if (h->shnum == 0)
			h->shnum = s0.size > UINT32_MAX ? UINT32_MAX : (uint32_t)s0.size;
		if (h->phnum == PN_XNUM)
			h->phnum = s0.info;
		if (h->shstrndx == SHN_XINDEX)
			h->shstrndx = s0.link;
	}
	if (h->phnum && h->phentsize < ph)
		return false;
	/* Every entry inside the file: also bounds the loops below by the file's size. */
	if ((h->phnum && !entry(f, h->phoff, h->phnum - 1, h->phentsize, ph)) ||
	    (h->shnum && !entry(f, h->shoff, h->shnum - 1, h->shentsize, sh)))
		return false;
	return h->shstrndx == SHN_UNDEF || h->shstrndx < h->shnum;
}

/* Whether n bytes of notes at p, each padded to align, hold Go's build ID. false also
 * for a malformed list (the rest cannot be told apart from padding). */
static bool go_note(const uint8_t *p, uint64_t n, uint64_t align)
{
	uint64_t a = align == 8 ? 8 : 4;
	while (n >= 12) {
		uint32_t w[3];  /* namesz, descsz, type; the name follows, then the desc */
		memcpy(w, p, sizeof(w));
		uint64_t desc = (12 + (uint64_t)w[0] + a - 1) & ~(a - 1);
		if (desc > n || w[1] > n - desc)
			return false;
		if (w[2] == GO_NOTE_BUILDID && w[0] == 3 && !memcmp(p + 12, "Go", 3))
			return true;
		uint64_t next = (desc + w[1] + a - 1) & ~(a - 1);
		if (next >= n)
			return false;
		p += next;
		n -= next;
	}
	return false;
}

/* Go's build information at a 16-byte boundary of a writable segment: found even in
 * a file stripped of its section headers and build ID. */
static bool go_buildinfo_in(const struct file *f, const struct seg *s)
{
	const uint8_t *p = at(f, s->off, s->filesz);
	if (!p)
		return false;
	for (uint64_t o = (16 - (s->off & 15)) & 15; o + GO_MAGIC_LEN <= s->filesz; o += 16)
		if (!memcmp(p + o, go_magic, GO_MAGIC_LEN))
			return true;
	return false;
}

static int scan_segments(const struct file *f, const struct hdr *h, struct ps_elf *out)
{
	bool writable_seen = false;
	for (uint32_t i = 0; i < h->phnum; i++) {
		struct seg s;
		if (!segment(f, h, i, &s))
			return -1;
		if (s.type == PT_INTERP)
			out->dynamic = true;
		if ((s.type == PT_NOTE || (s.type == PT_LOAD && s.flags & PF_W)) &&
		    !at(f, s.off, s.filesz))
			return -1;  /* a segment the kernel could not map from this file */
		if (s.type == PT_NOTE && go_note(f->p + s.off, s.filesz, s.align))
			out->go = true;
		if (s.type == PT_LOAD && s.flags & PF_W && !writable_seen) {
			writable_seen = true;
			out->go |= go_buildinfo_in(f, &s);
		}
	}
	return 0;
}

/* The NUL-terminated name at off in the string table section, or NULL. */
static const char *name_at(const struct file *f, const struct sec *strtab, uint32_t off)
{
	if (off >= strtab->size)
		return NULL;
	const uint8_t *p = at(f, strtab->off + off, strtab->size - off);
	return p && memchr(p, 0, strtab->size - off) ? (const char *)p : NULL;
}

static int scan_sections(const struct file *f, const struct hdr *h, struct ps_elf *out)
{
	struct sec strtab = {0}, s;
	if (h->shstrndx != SHN_UNDEF &&
	    (!section(f, h, h->shstrndx, &strtab) || strtab.type != SHT_STRTAB ||
	     !at(f, strtab.off, strtab.size)))
		return -1;
	for (uint32_t i = 1; i < h->shnum; i++) {
		if (!section(f, h, i, &s))
			return -1;
		if (s.type == SHT_NOBITS || s.type == SHT_NULL)
			continue;
		const uint8_t *p = at(f, s.off, s.size);
		if (!p)
			return -1;
		if (s.type == SHT_NOTE && go_note(p, s.size, s.align))
			out->go = true;
		const char *name = h->shstrndx ? name_at(f, &strtab, s.name) : NULL;
		if (name && !strcmp(name, ".go.buildinfo") && s.size >= GO_MAGIC_LEN &&
		    !memcmp(p, go_magic, GO_MAGIC_LEN))
			out->go = true;
	}
	return 0;
}

enum ps_elf_result ps_elf_inspect(const uint8_t *buf, size_t len, struct ps_elf *out)
{
	static const uint16_t one = 1;
	const unsigned char host_order = *(const uint8_t *)&one ? ELFDATA2LSB : ELFDATA2MSB;
	struct file f = {buf, len, false};
	struct hdr h;
	*out = (struct ps_elf){0};
	if (len < SELFMAG || memcmp(buf, ELFMAG, SELFMAG))
		return PS_ELF_NOT_ELF;
	if (len < EI_NIDENT || buf[EI_DATA] != host_order || buf[EI_VERSION] != EV_CURRENT ||
	    (buf[EI_CLASS] != ELFCLASS32 && buf[EI_CLASS] != ELFCLASS64))
		return PS_ELF_BAD;
	f.is64 = buf[EI_CLASS] == ELFCLASS64;
	if (len < (f.is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr)) || !read_header(&f, &h))
		return PS_ELF_BAD;
	out->elf_class = buf[EI_CLASS];
	memcpy(&out->machine, buf + offsetof(Elf64_Ehdr, e_machine), sizeof(out->machine));
	if (scan_segments(&f, &h, out) < 0 || scan_sections(&f, &h, out) < 0) {
		*out = (struct ps_elf){0};
		return PS_ELF_BAD;
	}
	return PS_ELF_OK;
}
