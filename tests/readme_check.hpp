// Checks that the code between a test file's README markers appears in
// README.md verbatim, so the README's examples are the code the tests run.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace readme_check {

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// The text between the "--- README example begins" and "... ends" marker
/// lines of `source` (empty if there are none).
inline std::string marked_example(const std::string& source) {
  const std::string begin = "// --- README example begins\n";
  const std::string end = "// --- README example ends\n";
  const auto b = source.find(begin);
  const auto e = source.find(end);
  if (b == std::string::npos || e == std::string::npos || e < b) return {};
  return source.substr(b + begin.size(), e - b - begin.size());
}

/// Whether README.md holds the example of `test_file` (relative to the
/// source root) verbatim.
inline bool readme_holds_example_of(const std::string& test_file) {
  // (Paths joined with filesystem::path: g++ 12 warns falsely about
  // array bounds in a std::string concatenation here.)
  const std::filesystem::path root(GROVE_SOURCE_ROOT);
  const std::string example = marked_example(read_file(root / test_file));
  return !example.empty() && read_file(root / "README.md").find(example) != std::string::npos;
}

} // namespace readme_check
