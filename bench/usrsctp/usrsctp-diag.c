/*
 * Bench diagnostic (never loaded by causeway itself): reads usrsctp's global counters and sets
 * its sysctls inside node-datachannel's prebuilt binary. node-datachannel 0.33 passes only six
 * of libdatachannel's SCTP settings to usrsctp, and usrsctp's functions are not exported from
 * node_datachannel.node, but the binary keeps its symbol table: this finds the loaded file
 * (dl_iterate_phdr), looks the function up in its ELF .symtab and calls it at load base + offset.
 * Built with gcc on first use by bench/usrsctp/index.ts. Exports:
 *   set(name, value) -> usrsctp_sysctl_set_<name>(value)'s result (0 = done)
 *   stats()          -> usrsctp_get_stat() as an array of uint32 (struct sctpstat, usrsctp.h)
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <link.h>
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#define STAT_WORDS 400

struct found { uintptr_t base; char path[4096]; };

static int find_binary(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  struct found *f = data;
  if (info->dlpi_name != NULL && strstr(info->dlpi_name, "node_datachannel.node") != NULL) {
    f->base = info->dlpi_addr;
    snprintf(f->path, sizeof f->path, "%s", info->dlpi_name);
    return 1;
  }
  return 0;
}

/* Address of a (local or global) function symbol of the loaded node-datachannel binary, or 0. */
static uintptr_t symbol(const char *name) {
  struct found f = { 0, "" };
  dl_iterate_phdr(find_binary, &f);
  if (f.base == 0) return 0;
  FILE *fp = fopen(f.path, "rb");
  if (fp == NULL) return 0;
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *buf = malloc((size_t)n);
  uintptr_t out = 0;
  if (buf != NULL && fread(buf, 1, (size_t)n, fp) == (size_t)n && n > (long)sizeof(Elf64_Ehdr)) {
    Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
    Elf64_Shdr *sh = (Elf64_Shdr *)(buf + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum && out == 0; i++) {
      if (sh[i].sh_type != SHT_SYMTAB) continue;
      Elf64_Sym *syms = (Elf64_Sym *)(buf + sh[i].sh_offset);
      const char *str = buf + sh[sh[i].sh_link].sh_offset;
      for (size_t k = 0; k < sh[i].sh_size / sizeof(Elf64_Sym); k++) {
        if (ELF64_ST_TYPE(syms[k].st_info) == STT_FUNC && strcmp(str + syms[k].st_name, name) == 0) { out = f.base + syms[k].st_value; break; }
      }
    }
  }
  free(buf);
  fclose(fp);
  return out;
}

static napi_value set(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char name[200], sym[256];
  size_t len = 0;
  uint32_t v = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok || napi_get_value_uint32(env, argv[1], &v) != napi_ok) {
    napi_throw_type_error(env, NULL, "set(name: string, value: number)");
    return NULL;
  }
  snprintf(sym, sizeof sym, "usrsctp_sysctl_set_%s", name);
  uintptr_t fn = symbol(sym);
  if (fn == 0) { napi_throw_error(env, NULL, "node-datachannel not loaded, or no such usrsctp sysctl"); return NULL; }
  napi_value r;
  napi_create_int32(env, ((int (*)(uint32_t))fn)(v), &r);
  return r;
}

static napi_value stats(napi_env env, napi_callback_info info) {
  (void)info;
  uintptr_t fn = symbol("usrsctp_get_stat");
  if (fn == 0) { napi_throw_error(env, NULL, "node-datachannel not loaded"); return NULL; }
  static uint32_t words[STAT_WORDS];
  memset(words, 0, sizeof words);
  ((void (*)(void *))fn)(words);
  napi_value arr;
  napi_create_array_with_length(env, STAT_WORDS, &arr);
  for (uint32_t i = 0; i < STAT_WORDS; i++) {
    napi_value x;
    napi_create_uint32(env, words[i], &x);
    napi_set_element(env, arr, i, x);
  }
  return arr;
}

NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "set", NAPI_AUTO_LENGTH, set, NULL, &f);
  napi_set_named_property(env, exports, "set", f);
  napi_create_function(env, "stats", NAPI_AUTO_LENGTH, stats, NULL, &f);
  napi_set_named_property(env, exports, "stats", f);
  return exports;
}
