/*
 * CRC32C (Castagnoli), the checksum of every record, header and snapshot on disk. Chosen over
 * the zlib CRC32 because it detects more error patterns at these lengths and because x86-64
 * computes it in hardware (SSE4.2), which keeps checksumming well below the cost of a write.
 */
#ifndef CRAFT_STORAGE_CRC32C_H
#define CRAFT_STORAGE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over len bytes at buf; crc32c("123456789") == 0xe3069283. Uses the
 * SSE4.2 instruction when the CPU has it, else slicing-by-8 tables. */
uint32_t craft__storage_crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable implementation alone, so tests can check both against each other. */
uint32_t craft__storage_crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif
