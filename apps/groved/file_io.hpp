// The two file operations groved's snapshot and write-ahead log share.
#pragma once

#include <cstddef>
#include <string>

namespace groved {

/// write(2) until all of it is written (EINTR retried); 0, or the errno
/// of the failure (ENOSPC for a write that wrote nothing).
int write_all(int fd, const char* data, std::size_t size) noexcept;

/// fsync(2) of a directory, so a file created, renamed or removed in it
/// stays so; 0, or the errno of the failure.
int sync_directory(const std::string& directory) noexcept;

} // namespace groved
