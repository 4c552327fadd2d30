#ifndef WGPM_CCURL_SHIM_H
#define WGPM_CCURL_SHIM_H
#include <curl/curl.h>

// curl_easy_setopt / curl_easy_getinfo are C-variadic, which Swift cannot call.
// These typed wrappers are compiled where used by the Clang importer.
static inline CURLcode ccurl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_str(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_ptr(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_write_cb(CURL *h, CURLoption o, curl_write_callback cb) { return curl_easy_setopt(h, o, cb); }
static inline CURLcode ccurl_setopt_xferinfo_cb(CURL *h, curl_xferinfo_callback cb) { return curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, cb); }
static inline CURLcode ccurl_getinfo_long(CURL *h, CURLINFO i, long *o) { return curl_easy_getinfo(h, i, o); }
static inline CURLcode ccurl_getinfo_off(CURL *h, CURLINFO i, curl_off_t *o) { return curl_easy_getinfo(h, i, o); }
static inline CURLcode ccurl_getinfo_str(CURL *h, CURLINFO i, char **o) { return curl_easy_getinfo(h, i, o); }
#include <malloc.h>
// glibc raises its mmap threshold after the first large block is freed, so later large
// buffers (libcurl's, the segment workers') stay resident in the heaps of worker threads after
// they are freed. Setting the threshold fixes it: such buffers go back to the system.
static inline int wgpm_fix_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }

#include <stdio.h>
// stdout is a C global Swift 6 will not touch: line buffering is set here.
static inline void wgpm_line_buffer_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }
#endif
