// grove/erps/term.hpp — an Erlang term as a C++ value: what an ETF payload
// (erps/etf.hpp) holds, and what an Elixir or Erlang peer sends.
//
//   using grove::erps::term;
//   term ok = term::tuple({term::atom("ok"), term::binary("value")});
//   ok.to_string();                                   // {ok,<<"value">>}
//   term m = term::map({{term::atom("op"), term::binary("get")}});
//   if (const term* op = m.find(term::atom("op"))) ...
//
// Kinds, as Erlang has them: integers of any size (exact: those past 64
// bits keep their magnitude), floats, atoms (UTF-8), binaries and bit
// binaries, tuples, maps (any key type), lists (proper or improper), []
// (nil), strings as Erlang sends them (a list of bytes, STRING_EXT: a list
// like any other, kept as bytes), and pids, ports, references and funs,
// kept as their ETF fields (node and module atoms, free variables as
// terms, the rest as bytes) so they travel back unchanged.
//
// == compares exactly, as Erlang's =:= (1 and 1.0 differ; a string and the
// list of the same bytes are equal). <=> is Erlang's term order (number <
// atom < reference < fun < port < pid < tuple < map < [] < list < bit
// string), with an integer before a float of the same value, so it is a
// total order consistent with ==. Map entries are kept in Erlang's map key
// order (term order, but every integer before every float), one per key. A term is a value: copy it, move it
// (cheap: a variant of strings and vectors).
#pragma once

#include <compare>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace grove::erps {

class term {
public:
  enum class kind : std::uint8_t {
    integer,    ///< fits in int64 (as_integer)
    big_integer, ///< past int64: sign and magnitude (big_magnitude), exact
    floating,
    atom,
    reference,  ///< opaque (see opaque_parts)
    fun,        ///< opaque (NEW_FUN_EXT, EXPORT_EXT)
    port,       ///< opaque
    pid,        ///< opaque
    tuple,
    map,
    nil,        ///< []
    list,       ///< a non-empty list (a string is one too: kind() says list)
    binary,
    bit_binary, ///< a binary whose last byte holds 1 to 7 bits
  };

  /// [] (nil).
  term() noexcept;

  static term integer(std::int64_t value) { return term(value); }
  static term integer(std::uint64_t value);
  /// An integer from its sign and little-endian magnitude bytes (as ETF
  /// writes big integers); normalised: one that fits int64 is an integer.
  static term big_integer(bool negative, std::string magnitude_le);
  static term floating(double value) { return term(value); }
  /// An atom: UTF-8, at most 255 characters (Erlang's limit; longer throws
  /// std::invalid_argument).
  static term atom(std::string name);
  static term boolean(bool b) { return atom(b ? "true" : "false"); }
  static term binary(std::string bytes) { return term(binary_value{std::move(bytes)}); }
  /// A bit string: `bytes` whose last byte holds `bits_in_last` bits (1 to
  /// 8; 8 is a binary), in its high bits.
  static term bit_binary(std::string bytes, std::uint8_t bits_in_last);
  static term tuple(std::vector<term> elements) { return term(tuple_value{std::move(elements)}); }
  static term tuple(std::initializer_list<term> elements) { return tuple(std::vector<term>(elements)); }
  /// A list; `tail` other than [] makes it improper ([a, b | c]).
  static term list(std::vector<term> elements, term tail = term());
  static term list(std::initializer_list<term> elements) { return list(std::vector<term>(elements)); }
  /// A list of bytes, as Erlang's STRING_EXT carries it ("abc" = [97,98,99]).
  static term string(std::string bytes);
  /// A map; a key given twice keeps its last value.
  static term map(std::vector<std::pair<term, term>> entries);
  static term map(std::initializer_list<std::pair<term, term>> entries) {
    return map(std::vector<std::pair<term, term>>(entries));
  }
  /// A pid, port, reference or fun as ETF has it: its tag and its fields in
  /// order, each a term (a node or module atom, an integer, a free
  /// variable) or a run of raw bytes. Made by etf::decode; etf::encode
  /// writes it back (its atoms in the encoding asked for).
  struct opaque_parts {
    kind what = kind::pid;
    std::uint8_t tag = 0;
    std::vector<term> fields{}; ///< raw runs as binaries
    std::string layout{};       ///< per field: 't' a term, 'r' raw bytes
  };
  static term opaque(opaque_parts parts);

  kind type() const noexcept;
  bool is_nil() const noexcept { return type() == kind::nil; }
  bool is_atom(std::string_view name) const noexcept;

  /// Each accessor answers for its kind and is empty (nullopt, nullptr) for
  /// any other.
  std::optional<std::int64_t> as_integer() const noexcept;
  std::optional<double> as_floating() const noexcept;
  /// An atom's name.
  const std::string* atom_name() const noexcept;
  /// A binary's bytes (or a bit binary's, with bits_in_last).
  const std::string* bytes() const noexcept;
  std::uint8_t bits_in_last() const noexcept;
  /// A big integer's sign and little-endian magnitude.
  bool big_negative() const noexcept;
  const std::string* big_magnitude() const noexcept;
  /// A tuple's elements (changeable in place: a term is a value).
  const std::vector<term>* elements() const noexcept;
  std::vector<term>* elements() noexcept;
  /// A list's elements (a string's, as integers, made on demand), and its
  /// tail ([] for a proper list).
  std::vector<term> list_elements() const;
  const term& list_tail() const noexcept;
  std::size_t list_size() const noexcept;
  /// A list kept as elements, without a copy (nullptr for a string-kind
  /// list, which string_bytes gives, and for any other kind).
  const std::vector<term>* list_items() const noexcept;
  /// A string-kind list's bytes (nullptr for a list kept as elements).
  const std::string* string_bytes() const noexcept;
  /// A map's entries, in the term order of their keys.
  const std::vector<std::pair<term, term>>* entries() const noexcept;
  /// The value of `key` in a map; nullptr if absent or not a map.
  const term* find(const term& key) const noexcept;
  /// A pid's, port's, reference's or fun's parts.
  const opaque_parts* opaque() const noexcept;

  /// Erlang syntax on one line, as io_lib:format("~p") writes a short term:
  /// {ok,<<"value">>}, [1,2|x], #{a => 1}, 'Quoted atom', "abc" (a list of
  /// printable bytes), 1.5e-7. Pids, ports, references and funs are shown
  /// as #Pid<node.1.0>: the node or module, then the fields' numbers.
  std::string to_string() const;

  friend bool operator==(const term& a, const term& b) noexcept { return compare(a, b) == 0; }
  friend std::strong_ordering operator<=>(const term& a, const term& b) noexcept {
    const int c = compare(a, b);
    return c < 0 ? std::strong_ordering::less : c > 0 ? std::strong_ordering::greater : std::strong_ordering::equal;
  }

private:
  struct big_value {
    bool negative = false;
    std::string magnitude; // little-endian, no high zero bytes, past int64
  };
  struct atom_value {
    std::string name;
  };
  struct binary_value {
    std::string bytes;
  };
  struct bits_value {
    std::string bytes;
    std::uint8_t bits = 8;
  };
  struct tuple_value {
    std::vector<term> elements;
  };
  struct list_value {
    std::vector<term> elements; // non-empty
    std::vector<term> tail;     // empty: proper; else one element, the tail
  };
  struct string_value {
    std::string bytes; // non-empty
  };
  struct map_value {
    std::vector<std::pair<term, term>> entries; // sorted by key, unique
  };
  struct opaque_value {
    opaque_parts parts;
  };
  struct nil_value {};
  using storage = std::variant<nil_value, std::int64_t, big_value, double, atom_value, binary_value, bits_value,
                               tuple_value, list_value, string_value, map_value, opaque_value>;

  template <class V>
  explicit term(V v) : value_(std::move(v)) {}

  static int compare(const term& a, const term& b) noexcept;
  static int compare_keys(const term& a, const term& b) noexcept;
  void write(std::string& out) const;

  storage value_;
};

std::ostream& operator<<(std::ostream& os, const term& t);

} // namespace grove::erps
