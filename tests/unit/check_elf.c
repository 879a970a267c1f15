/* Unit tests for the ELF facts the command checks before running a target
 * (cmd/elfinfo.h): images built here byte by byte, each with one fact changed, and
 * every truncation and corruption of them parsed without reading past the buffer. */
#include <elf.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "elfinfo.h"
#include "unit.h"

#define IMG 4096
#define PH_OFF 64
#define NOTE_OFF 512
#define DATA_OFF 1024      /* a writable segment's bytes */
#define STRTAB_OFF 2048
#define SH_OFF 2304

/* What an image holds; each field adds one fact. */
struct spec {
	bool interp;         /* PT_INTERP */
	const char *owner;   /* a PT_NOTE (and SHT_NOTE section) with this owner... */
	uint32_t note_type;  /* ...and type */
	int magic_at;        /* "\xff Go buildinf:" at DATA_OFF + magic_at (-1: none) */
	bool sections;       /* section headers: .shstrtab, .note, .go.buildinfo at DATA_OFF */
};

static uint8_t img[IMG];

static size_t put_note(const char *owner, uint32_t type)
{
	uint32_t w[3] = {(uint32_t)strlen(owner) + 1, 8, type};
	memcpy(img + NOTE_OFF, w, 12);
	memcpy(img + NOTE_OFF + 12, owner, w[0]);
	return 12 + ((w[0] + 3) & ~3u) + 8;
}

static void put_sections(size_t note_len)
{
	static const char names[] = "\0.shstrtab\0.note.go.buildid\0.go.buildinfo";
	Elf64_Shdr sh[4] = {
		{0},
		{.sh_name = 1, .sh_type = SHT_STRTAB, .sh_offset = STRTAB_OFF,
		 .sh_size = sizeof(names)},
		{.sh_name = 11, .sh_type = SHT_NOTE, .sh_offset = NOTE_OFF, .sh_size = note_len,
		 .sh_addralign = 4},
		{.sh_name = 28, .sh_type = SHT_PROGBITS, .sh_offset = DATA_OFF, .sh_size = 256,
		 .sh_addralign = 16},
	};
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	memcpy(img + STRTAB_OFF, names, sizeof(names));
	memcpy(img + SH_OFF, sh, sizeof(sh));
	eh->e_shoff = SH_OFF;
	eh->e_shentsize = sizeof(Elf64_Shdr);
	eh->e_shnum = 4;
	eh->e_shstrndx = 1;
}

static size_t build(const struct spec *s)
{
	Elf64_Ehdr eh = {
		.e_ident = {ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB,
			    EV_CURRENT},
		.e_type = ET_EXEC, .e_machine = EM_X86_64, .e_version = EV_CURRENT,
		.e_phoff = PH_OFF, .e_ehsize = sizeof(Elf64_Ehdr),
		.e_phentsize = sizeof(Elf64_Phdr),
	};
	Elf64_Phdr ph[3];
	int n = 0;
	size_t note_len = 0;
	memset(img, 0, sizeof(img));
	if (s->interp)
		ph[n++] = (Elf64_Phdr){.p_type = PT_INTERP, .p_offset = 400, .p_filesz = 28};
	if (s->owner) {
		note_len = put_note(s->owner, s->note_type);
		ph[n++] = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = NOTE_OFF,
				       .p_filesz = note_len, .p_align = 4};
	}
	ph[n++] = (Elf64_Phdr){.p_type = PT_LOAD, .p_flags = PF_R | PF_W,
			       .p_offset = DATA_OFF, .p_filesz = 512};
	if (s->magic_at >= 0)
		memcpy(img + DATA_OFF + s->magic_at, "\xff Go buildinf:", 14);
	eh.e_phnum = (uint16_t)n;
	memcpy(img, &eh, sizeof(eh));
	memcpy(img + PH_OFF, ph, sizeof(ph[0]) * (size_t)n);
	if (s->sections)
		put_sections(note_len);
	return IMG;
}

static const struct {
	const char *name;
	struct spec s;
	bool dynamic, go;
} facts[] = {
	{"a dynamic C program", {.interp = true, .magic_at = -1}, true, false},
	{"a static C program", {.magic_at = -1}, false, false},
	{"a GNU build ID note", {.interp = true, .owner = "GNU", .note_type = 3, .magic_at = -1},
	 true, false},
	{"Go's build ID note, dynamic", {.interp = true, .owner = "Go", .note_type = 4,
					  .magic_at = -1}, true, true},
	{"Go's build ID note, static", {.owner = "Go", .note_type = 4, .magic_at = -1}, false,
	 true},
	{"a Go note of another type", {.owner = "Go", .note_type = 1, .magic_at = -1}, false,
	 false},
	{"an owner Go-like but longer", {.owner = "Gopher", .note_type = 4, .magic_at = -1},
	 false, false},
	{"build info, no sections (stripped)", {.magic_at = 32}, false, true},
	{"build info off the 16-byte grid", {.magic_at = 33}, false, false},
	{"sections: .go.buildinfo with the magic", {.sections = true, .magic_at = 0}, false,
	 true},
	{"sections: .go.buildinfo without the magic", {.sections = true, .magic_at = -1},
	 false, false},
	{"sections and a Go note", {.sections = true, .owner = "Go", .note_type = 4,
				    .magic_at = -1}, false, true},
};

START_TEST(test_facts)
{
	struct ps_elf e;
	size_t len = build(&facts[_i].s);
	ck_assert_msg(ps_elf_inspect(img, len, &e) == PS_ELF_OK, "%s", facts[_i].name);
	ck_assert_msg(e.dynamic == facts[_i].dynamic, "%s: dynamic", facts[_i].name);
	ck_assert_msg(e.go == facts[_i].go, "%s: go", facts[_i].name);
	ck_assert_uint_eq(e.elf_class, ELFCLASS64);
	ck_assert_uint_eq(e.machine, EM_X86_64);
}
END_TEST

/* Each prefix of a full image, copied to a buffer of exactly that size (ASan sees a
 * read past it), parses or is refused, never read past. */
START_TEST(test_truncated)
{
	struct spec s = {.interp = true, .owner = "Go", .note_type = 4, .magic_at = 0,
			 .sections = true};
	size_t full = build(&s);
	for (size_t len = 0; len <= full; len++) {
		uint8_t *copy = malloc(len ? len : 1);
		struct ps_elf e;
		memcpy(copy, img, len);
		enum ps_elf_result r = ps_elf_inspect(copy, len, &e);
		ck_assert_msg(len >= SH_OFF + 4 * sizeof(Elf64_Shdr) ? r == PS_ELF_OK
								     : r != PS_ELF_OK,
			      "length %zu: %d", len, r);
		free(copy);
	}
}
END_TEST

static void corrupt(size_t off, const void *v, size_t n)
{
	struct spec s = {.interp = true, .owner = "Go", .note_type = 4, .magic_at = 0,
			 .sections = true};
	build(&s);
	memcpy(img + off, v, n);
}

#define EH(field) offsetof(Elf64_Ehdr, field)
#define SH(i, field) (SH_OFF + (i) * sizeof(Elf64_Shdr) + offsetof(Elf64_Shdr, field))

START_TEST(test_malformed)
{
	struct ps_elf e;
	uint64_t huge = UINT64_MAX - 8, past = IMG - 8;
	uint16_t small = 8, many = 0xfffe, big_idx = 9;
	uint8_t msb = ELFDATA2MSB, cls = 7;
	const struct {
		const char *what;
		size_t off;
		const void *v;
		size_t n;
	} bad[] = {
		{"program headers at 2^64-8", EH(e_phoff), &huge, 8},
		{"program headers past the end", EH(e_phoff), &past, 8},
		{"program header entries of 8 bytes", EH(e_phentsize), &small, 2},
		{"65534 program headers", EH(e_phnum), &many, 2},
		{"section headers at 2^64-8", EH(e_shoff), &huge, 8},
		{"section header entries of 8 bytes", EH(e_shentsize), &small, 2},
		{"65534 section headers", EH(e_shnum), &many, 2},
		{"a name table index past the table", EH(e_shstrndx), &big_idx, 2},
		{"the other byte order", EI_DATA, &msb, 1},
		{"an unknown class", EI_CLASS, &cls, 1},
		{"a section at 2^64-8", SH(3, sh_offset), &huge, 8},
		{"a section 2^64-8 long", SH(3, sh_size), &huge, 8},
		{"the name table past the end", SH(1, sh_offset), &past, 8},
		{"a note segment past the end", PH_OFF + sizeof(Elf64_Phdr) +
		 offsetof(Elf64_Phdr, p_offset), &past, 8},
	};
	for (size_t i = 0; i < N(bad); i++) {
		corrupt(bad[i].off, bad[i].v, bad[i].n);
		ck_assert_msg(ps_elf_inspect(img, IMG, &e) == PS_ELF_BAD, "%s", bad[i].what);
	}
	ck_assert_int_eq(ps_elf_inspect((const uint8_t *)"#!/bin/sh\n", 10, &e), PS_ELF_NOT_ELF);
	ck_assert_int_eq(ps_elf_inspect(img, 3, &e), PS_ELF_NOT_ELF);
}
END_TEST

/* Malformed content that the loader never reads: the file parses, the fact is not
 * invented from it. */
START_TEST(test_bad_content)
{
	struct ps_elf e;
	uint32_t huge = 0xfffffff0, name_past = 5000;
	corrupt(NOTE_OFF, &huge, 4);  /* the note's name size */
	ck_assert_int_eq(ps_elf_inspect(img, IMG, &e), PS_ELF_OK);
	corrupt(NOTE_OFF + 4, &huge, 4);  /* its descriptor size */
	ck_assert_int_eq(ps_elf_inspect(img, IMG, &e), PS_ELF_OK);
	corrupt(SH(3, sh_name), &name_past, 4);  /* .go.buildinfo's name */
	ck_assert_int_eq(ps_elf_inspect(img, IMG, &e), PS_ELF_OK);
	ck_assert(e.go);  /* still found by its note */
}
END_TEST

/* Extended numbering: more than 0xff00 sections put the count in section 0. */
START_TEST(test_extended_count)
{
	struct ps_elf e;
	struct spec s = {.sections = true, .magic_at = 0};
	uint16_t zero = 0, xindex = SHN_XINDEX;
	uint64_t count = 4;
	uint32_t strndx = 1;
	build(&s);
	memcpy(img + EH(e_shnum), &zero, 2);
	memcpy(img + EH(e_shstrndx), &xindex, 2);
	memcpy(img + SH(0, sh_size), &count, 8);
	memcpy(img + SH(0, sh_link), &strndx, 4);
	ck_assert_int_eq(ps_elf_inspect(img, IMG, &e), PS_ELF_OK);
	ck_assert(e.go);
	count = 1u << 30;
	memcpy(img + SH(0, sh_size), &count, 8);
	ck_assert_int_eq(ps_elf_inspect(img, IMG, &e), PS_ELF_BAD);
}
END_TEST

START_TEST(test_elf32)
{
	Elf32_Ehdr eh = {
		.e_ident = {ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS32, ELFDATA2LSB,
			    EV_CURRENT},
		.e_type = ET_EXEC, .e_machine = EM_386, .e_version = EV_CURRENT,
		.e_ehsize = sizeof(Elf32_Ehdr),
	};
	struct ps_elf e;
	ck_assert_int_eq(ps_elf_inspect((const uint8_t *)&eh, sizeof(eh), &e), PS_ELF_OK);
	ck_assert_uint_eq(e.elf_class, ELFCLASS32);
	ck_assert_uint_eq(e.machine, EM_386);
	ck_assert_int_eq(ps_elf_inspect((const uint8_t *)&eh, sizeof(eh) - 1, &e), PS_ELF_BAD);
}
END_TEST

/* This test program itself: a real, dynamically linked C program. */
START_TEST(test_self)
{
	struct ps_elf e;
	struct stat st;
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	ck_assert(p != MAP_FAILED);
	ck_assert_int_eq(ps_elf_inspect(p, (size_t)st.st_size, &e), PS_ELF_OK);
	ck_assert(e.dynamic);
	ck_assert(!e.go);
	munmap(p, (size_t)st.st_size);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("elf");
	TCase *tc = tcase_create("malformed");
	add_loop(s, "facts", test_facts, (int)N(facts));
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_bad_content);
	tcase_add_test(tc, test_extended_count);
	tcase_add_test(tc, test_elf32);
	tcase_add_test(tc, test_self);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
