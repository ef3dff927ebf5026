#include <grove/erps/term.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ostream>
#include <stdexcept>

namespace grove::erps {

namespace {

/// UTF-8 characters in `s` (not validated: counts non-continuation bytes).
std::size_t utf8_length(std::string_view s) noexcept {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

int sign_of(int c) noexcept { return c < 0 ? -1 : c > 0 ? 1 : 0; }

int compare_bytes(std::string_view a, std::string_view b) noexcept { return sign_of(a.compare(b)); }

/// A big integer's rank against another (both past int64), by sign, length
/// and magnitude.
int compare_big(bool an, const std::string& am, bool bn, const std::string& bm) noexcept {
  if (an != bn) return an ? -1 : 1;
  int mag = 0;
  if (am.size() != bm.size()) {
    mag = am.size() < bm.size() ? -1 : 1;
  } else {
    for (std::size_t i = am.size(); i-- > 0;) {
      if (am[i] != bm[i]) {
        mag = static_cast<unsigned char>(am[i]) < static_cast<unsigned char>(bm[i]) ? -1 : 1;
        break;
      }
    }
  }
  return an ? -mag : mag;
}

/// A big integer's value as a double (for comparing with floats).
double big_as_double(bool negative, const std::string& m) noexcept {
  double v = 0;
  for (std::size_t i = m.size(); i-- > 0;) v = v * 256.0 + static_cast<unsigned char>(m[i]);
  return negative ? -v : v;
}

bool printable_latin1(std::string_view bytes) noexcept {
  return std::all_of(bytes.begin(), bytes.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c >= 32 && c < 127) || c == '\n' || c == '\t' || c == '\r';
  });
}

void quoted_into(std::string& out, std::string_view text, char quote) {
  out.push_back(quote);
  for (char ch : text) {
    switch (ch) {
    case '\n': out += "\\n"; break;
    case '\t': out += "\\t"; break;
    case '\r': out += "\\r"; break;
    case '\\': out += "\\\\"; break;
    default:
      if (ch == quote) out.push_back('\\');
      out.push_back(ch);
    }
  }
  out.push_back(quote);
}

bool bare_atom(std::string_view name) noexcept {
  if (name.empty() || !(name[0] >= 'a' && name[0] <= 'z')) return false;
  static constexpr std::string_view reserved[] = {"after", "and", "andalso", "band", "begin", "bnot", "bor", "bsl",
                                                  "bsr", "bxor", "case", "catch", "cond", "div", "end", "fun", "if",
                                                  "let", "maybe", "not", "of", "or", "orelse", "receive", "rem",
                                                  "try", "when", "xor"};
  if (std::find(std::begin(reserved), std::end(reserved), name) != std::end(reserved)) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '@';
  });
}

/// A float as Erlang writes it (float_to_list(F, [short]), as ~p does): the
/// shortest digits that read back to the same double, always with a
/// fraction, in plain or scientific notation, whichever is shorter (plain
/// on a tie): "5.0", "1234567.0", "1.0e15", "1.0e-5".
void float_into(std::string& out, double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  const std::string s(buf, r.ptr);
  const auto e = s.find('e');
  std::string mantissa = s.substr(0, e);
  const int exponent = std::stoi(s.substr(e + 1));
  const bool negative = mantissa[0] == '-';
  std::string digits = mantissa.substr(negative ? 1 : 0);
  if (const auto dot = digits.find('.'); dot != std::string::npos) digits.erase(dot, 1); // d[.ddd] -> dddd
  if (mantissa.find('.') == std::string::npos) mantissa += ".0";
  const std::string scientific = mantissa + "e" + std::to_string(exponent);
  std::string plain;
  if (exponent >= 0) {
    const std::size_t point = static_cast<std::size_t>(exponent) + 1;
    plain = digits.size() <= point ? digits + std::string(point - digits.size(), '0') + ".0"
                                   : digits.substr(0, point) + "." + digits.substr(point);
  } else {
    plain = "0." + std::string(static_cast<std::size_t>(-exponent - 1), '0') + digits;
  }
  if (negative) plain.insert(0, "-");
  out += plain.size() <= scientific.size() ? plain : scientific;
}

} // namespace

term::term() noexcept : value_(nil_value{}) {}

term term::integer(std::uint64_t value) {
  if (value <= static_cast<std::uint64_t>(INT64_MAX)) return term(static_cast<std::int64_t>(value));
  std::string m;
  for (; value != 0; value >>= 8) m.push_back(static_cast<char>(value & 0xFF));
  return term(big_value{false, std::move(m)});
}

term term::big_integer(bool negative, std::string magnitude) {
  while (!magnitude.empty() && magnitude.back() == '\0') magnitude.pop_back();
  if (magnitude.size() <= 8) {
    std::uint64_t v = 0;
    for (std::size_t i = magnitude.size(); i-- > 0;) v = (v << 8) | static_cast<unsigned char>(magnitude[i]);
    if (!negative && v <= static_cast<std::uint64_t>(INT64_MAX)) return term(static_cast<std::int64_t>(v));
    if (negative && v <= static_cast<std::uint64_t>(INT64_MAX) + 1) {
      return term(v == static_cast<std::uint64_t>(INT64_MAX) + 1 ? INT64_MIN : -static_cast<std::int64_t>(v));
    }
  }
  return term(big_value{negative, std::move(magnitude)});
}

term term::atom(std::string name) {
  if (utf8_length(name) > 255) {
    throw std::invalid_argument("an atom has at most 255 characters; this one has " + std::to_string(utf8_length(name)));
  }
  return term(atom_value{std::move(name)});
}

term term::bit_binary(std::string bytes, std::uint8_t bits_in_last) {
  if (bits_in_last < 1 || bits_in_last > 8 || bytes.empty()) {
    throw std::invalid_argument("a bit binary has at least one byte and 1 to 8 bits in its last");
  }
  if (bits_in_last == 8) return binary(std::move(bytes));
  // Bits past the last one are zero in Erlang's representation.
  bytes.back() = static_cast<char>(static_cast<unsigned char>(bytes.back()) & (0xFF << (8 - bits_in_last)));
  return term(bits_value{std::move(bytes), bits_in_last});
}

term term::list(std::vector<term> elements, term tail) {
  if (elements.empty()) return tail; // [ | T] is T
  // Flatten a list tail into this list: [a | [b, c]] is [a, b, c].
  while (tail.type() == kind::list) {
    std::vector<term> more = tail.list_elements();
    term next = tail.list_tail();
    elements.insert(elements.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
    tail = std::move(next);
  }
  list_value v{std::move(elements), {}};
  if (!tail.is_nil()) v.tail.push_back(std::move(tail));
  return term(std::move(v));
}

term term::string(std::string bytes) {
  if (bytes.empty()) return term();
  return term(string_value{std::move(bytes)});
}

term term::map(std::vector<std::pair<term, term>> entries) {
  // Stable: of a key given twice, the last value stays.
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return compare_keys(a.first, b.first) < 0; });
  std::vector<std::pair<term, term>> unique;
  unique.reserve(entries.size());
  for (auto& e : entries) {
    if (!unique.empty() && compare_keys(unique.back().first, e.first) == 0) {
      unique.back().second = std::move(e.second);
    } else {
      unique.push_back(std::move(e));
    }
  }
  return term(map_value{std::move(unique)});
}

term term::opaque(opaque_parts parts) {
  const kind k = parts.what;
  if (k != kind::pid && k != kind::port && k != kind::reference && k != kind::fun) {
    throw std::invalid_argument("term::opaque: a pid, port, reference or fun");
  }
  if (parts.layout.size() != parts.fields.size()) throw std::invalid_argument("term::opaque: one layout mark per field");
  return term(opaque_value{std::move(parts)});
}

term::kind term::type() const noexcept {
  switch (value_.index()) {
  case 0: return kind::nil;
  case 1: return kind::integer;
  case 2: return kind::big_integer;
  case 3: return kind::floating;
  case 4: return kind::atom;
  case 5: return kind::binary;
  case 6: return kind::bit_binary;
  case 7: return kind::tuple;
  case 8:
  case 9: return kind::list;
  case 10: return kind::map;
  default: return std::get<opaque_value>(value_).parts.what;
  }
}

bool term::is_atom(std::string_view name) const noexcept {
  const auto* a = std::get_if<atom_value>(&value_);
  return a && a->name == name;
}

std::optional<std::int64_t> term::as_integer() const noexcept {
  if (const auto* i = std::get_if<std::int64_t>(&value_)) return *i;
  return std::nullopt;
}
std::optional<double> term::as_floating() const noexcept {
  if (const auto* d = std::get_if<double>(&value_)) return *d;
  return std::nullopt;
}
const std::string* term::atom_name() const noexcept {
  const auto* a = std::get_if<atom_value>(&value_);
  return a ? &a->name : nullptr;
}
const std::string* term::bytes() const noexcept {
  if (const auto* b = std::get_if<binary_value>(&value_)) return &b->bytes;
  if (const auto* b = std::get_if<bits_value>(&value_)) return &b->bytes;
  return nullptr;
}
std::uint8_t term::bits_in_last() const noexcept {
  if (const auto* b = std::get_if<bits_value>(&value_)) return b->bits;
  return 8;
}
bool term::big_negative() const noexcept {
  const auto* b = std::get_if<big_value>(&value_);
  return b && b->negative;
}
const std::string* term::big_magnitude() const noexcept {
  const auto* b = std::get_if<big_value>(&value_);
  return b ? &b->magnitude : nullptr;
}
const std::vector<term>* term::elements() const noexcept {
  const auto* t = std::get_if<tuple_value>(&value_);
  return t ? &t->elements : nullptr;
}
std::vector<term>* term::elements() noexcept {
  auto* t = std::get_if<tuple_value>(&value_);
  return t ? &t->elements : nullptr;
}
std::vector<term> term::list_elements() const {
  if (const auto* l = std::get_if<list_value>(&value_)) return l->elements;
  std::vector<term> out;
  if (const auto* s = std::get_if<string_value>(&value_)) {
    out.reserve(s->bytes.size());
    for (unsigned char c : s->bytes) out.push_back(term(static_cast<std::int64_t>(c)));
  }
  return out;
}
const term& term::list_tail() const noexcept {
  static const term nil;
  const auto* l = std::get_if<list_value>(&value_);
  return l && !l->tail.empty() ? l->tail.front() : nil;
}
std::size_t term::list_size() const noexcept {
  if (const auto* l = std::get_if<list_value>(&value_)) return l->elements.size();
  if (const auto* s = std::get_if<string_value>(&value_)) return s->bytes.size();
  return 0;
}
const std::vector<term>* term::list_items() const noexcept {
  const auto* l = std::get_if<list_value>(&value_);
  return l ? &l->elements : nullptr;
}
const std::string* term::string_bytes() const noexcept {
  const auto* s = std::get_if<string_value>(&value_);
  return s ? &s->bytes : nullptr;
}
const std::vector<std::pair<term, term>>* term::entries() const noexcept {
  const auto* m = std::get_if<map_value>(&value_);
  return m ? &m->entries : nullptr;
}
const term* term::find(const term& key) const noexcept {
  const auto* m = std::get_if<map_value>(&value_);
  if (!m) return nullptr;
  auto it = std::lower_bound(m->entries.begin(), m->entries.end(), key,
                             [](const auto& e, const term& k) { return compare_keys(e.first, k) < 0; });
  return it != m->entries.end() && compare_keys(it->first, key) == 0 ? &it->second : nullptr;
}
const term::opaque_parts* term::opaque() const noexcept {
  const auto* o = std::get_if<opaque_value>(&value_);
  return o ? &o->parts : nullptr;
}

int term::compare_keys(const term& a, const term& b) noexcept {
  // Map key order: term order, except that every integer comes before
  // every float (Erlang's maps order 2 before 1.0).
  const bool af = a.type() == kind::floating, bf = b.type() == kind::floating;
  const bool ai = a.type() == kind::integer || a.type() == kind::big_integer;
  const bool bi = b.type() == kind::integer || b.type() == kind::big_integer;
  if (ai && bf) return -1;
  if (af && bi) return 1;
  return compare(a, b);
}

int term::compare(const term& a, const term& b) noexcept {
  // Erlang's classes, in term order.
  auto rank = [](const term& t) -> int {
    switch (t.type()) {
    case kind::integer:
    case kind::big_integer:
    case kind::floating: return 0;
    case kind::atom: return 1;
    case kind::reference: return 2;
    case kind::fun: return 3;
    case kind::port: return 4;
    case kind::pid: return 5;
    case kind::tuple: return 6;
    case kind::map: return 7;
    case kind::nil: return 8;
    case kind::list: return 9;
    case kind::binary:
    case kind::bit_binary: return 10;
    }
    return 11;
  };
  const int ra = rank(a), rb = rank(b);
  if (ra != rb) return ra < rb ? -1 : 1;
  switch (ra) {
  case 0: { // numbers: by value; of equal values, the integer first
    const auto* ai = std::get_if<std::int64_t>(&a.value_);
    const auto* bi = std::get_if<std::int64_t>(&b.value_);
    const auto* ab = std::get_if<big_value>(&a.value_);
    const auto* bb = std::get_if<big_value>(&b.value_);
    const auto* af = std::get_if<double>(&a.value_);
    const auto* bf = std::get_if<double>(&b.value_);
    if (ai && bi) return *ai < *bi ? -1 : *ai > *bi ? 1 : 0;
    if (ab && bb) return compare_big(ab->negative, ab->magnitude, bb->negative, bb->magnitude);
    if (ai && bb) return bb->negative ? 1 : -1; // a big integer is past every int64
    if (ab && bi) return ab->negative ? -1 : 1;
    if (af && bf) return *af < *bf ? -1 : *af > *bf ? 1 : 0;
    const double x = af ? *af : ai ? static_cast<double>(*ai) : big_as_double(ab->negative, ab->magnitude);
    const double y = bf ? *bf : bi ? static_cast<double>(*bi) : big_as_double(bb->negative, bb->magnitude);
    if (x != y) return x < y ? -1 : 1;
    return af ? 1 : -1; // equal values: the float after the integer
  }
  case 1: return compare_bytes(std::get<atom_value>(a.value_).name, std::get<atom_value>(b.value_).name);
  case 2:
  case 3:
  case 4:
  case 5: { // by tag, then field by field
    const opaque_parts& x = std::get<opaque_value>(a.value_).parts;
    const opaque_parts& y = std::get<opaque_value>(b.value_).parts;
    if (x.tag != y.tag) return x.tag < y.tag ? -1 : 1;
    if (int c = compare_bytes(x.layout, y.layout)) return c;
    for (std::size_t i = 0; i < x.fields.size(); ++i) {
      if (int c = compare(x.fields[i], y.fields[i])) return c;
    }
    return 0;
  }
  case 6: {
    const auto& x = std::get<tuple_value>(a.value_).elements;
    const auto& y = std::get<tuple_value>(b.value_).elements;
    if (x.size() != y.size()) return x.size() < y.size() ? -1 : 1;
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (int c = compare(x[i], y[i])) return c;
    }
    return 0;
  }
  case 7: { // maps: by size, then keys in order, then values in key order
    const auto& x = std::get<map_value>(a.value_).entries;
    const auto& y = std::get<map_value>(b.value_).entries;
    if (x.size() != y.size()) return x.size() < y.size() ? -1 : 1;
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (int c = compare_keys(x[i].first, y[i].first)) return c;
    }
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (int c = compare(x[i].second, y[i].second)) return c;
    }
    return 0;
  }
  case 8: return 0;
  case 9: { // lists element by element, then tails; a string is its bytes as integers
    const auto* xs = std::get_if<string_value>(&a.value_);
    const auto* ys = std::get_if<string_value>(&b.value_);
    if (xs && ys) return compare_bytes(xs->bytes, ys->bytes);
    // Element by element, in place: a string's element is made as an integer.
    const std::vector<term>* xl = a.list_items();
    const std::vector<term>* yl = b.list_items();
    const std::size_t nx = a.list_size(), ny = b.list_size();
    term xb, yb;
    for (std::size_t i = 0; i < nx && i < ny; ++i) {
      const term& xi = xl ? (*xl)[i] : (xb = term(static_cast<std::int64_t>(static_cast<unsigned char>(xs->bytes[i]))));
      const term& yi = yl ? (*yl)[i] : (yb = term(static_cast<std::int64_t>(static_cast<unsigned char>(ys->bytes[i]))));
      if (int c = compare(xi, yi)) return c;
    }
    if (nx != ny) {
      // The shorter list goes on with its tail against the rest of the longer:
      // a proper one ends there ([] sorts before any list), so it is less.
      const bool x_shorter = nx < ny;
      const term& tail = x_shorter ? a.list_tail() : b.list_tail();
      if (tail.is_nil()) return x_shorter ? -1 : 1;
      // (An improper shorter list: its tail against the longer's rest, built once.)
      const term& longer = x_shorter ? b : a;
      std::vector<term> rest = longer.list_elements();
      rest.erase(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(x_shorter ? nx : ny));
      const int c = compare(tail, term::list(std::move(rest), longer.list_tail()));
      return x_shorter ? c : -c;
    }
    return compare(a.list_tail(), b.list_tail());
  }
  default: { // bit strings: by bytes, then by bits
    const std::string& x = *a.bytes();
    const std::string& y = *b.bytes();
    if (int c = compare_bytes(x, y)) return c;
    const int bx = a.bits_in_last(), by = b.bits_in_last();
    return bx < by ? -1 : bx > by ? 1 : 0;
  }
  }
}

void term::write(std::string& out) const {
  switch (value_.index()) {
  case 0: out += "[]"; return;
  case 1: out += std::to_string(std::get<std::int64_t>(value_)); return;
  case 2: { // decimal of a little-endian magnitude: repeated division by 10
    const auto& b = std::get<big_value>(value_);
    std::vector<unsigned> digits(b.magnitude.begin(), b.magnitude.end());
    for (auto& d : digits) d &= 0xFF;
    std::string text;
    while (!digits.empty()) {
      unsigned rem = 0;
      for (std::size_t i = digits.size(); i-- > 0;) {
        const unsigned cur = rem * 256 + digits[i];
        digits[i] = cur / 10;
        rem = cur % 10;
      }
      text.push_back(static_cast<char>('0' + rem));
      while (!digits.empty() && digits.back() == 0) digits.pop_back();
    }
    if (b.negative) text.push_back('-');
    std::reverse(text.begin(), text.end());
    out += text;
    return;
  }
  case 3: float_into(out, std::get<double>(value_)); return;
  case 4: {
    const std::string& name = std::get<atom_value>(value_).name;
    if (bare_atom(name)) out += name;
    else quoted_into(out, name, '\'');
    return;
  }
  case 5:
  case 6: {
    const std::string& b = *bytes();
    const bool bits = value_.index() == 6;
    out += "<<";
    if (!bits && printable_latin1(b) && !b.empty()) {
      quoted_into(out, b, '"');
    } else {
      for (std::size_t i = 0; i < b.size(); ++i) {
        if (i) out.push_back(',');
        out += std::to_string(static_cast<unsigned char>(b[i]) >> (bits && i + 1 == b.size() ? 8 - bits_in_last() : 0));
        if (bits && i + 1 == b.size()) out += ":" + std::to_string(bits_in_last());
      }
    }
    out += ">>";
    return;
  }
  case 7: {
    out.push_back('{');
    const auto& e = std::get<tuple_value>(value_).elements;
    for (std::size_t i = 0; i < e.size(); ++i) {
      if (i) out.push_back(',');
      e[i].write(out);
    }
    out.push_back('}');
    return;
  }
  case 8: {
    const auto& l = std::get<list_value>(value_);
    out.push_back('[');
    for (std::size_t i = 0; i < l.elements.size(); ++i) {
      if (i) out.push_back(',');
      l.elements[i].write(out);
    }
    if (!l.tail.empty()) {
      out.push_back('|');
      l.tail.front().write(out);
    }
    out.push_back(']');
    return;
  }
  case 9: {
    const std::string& s = std::get<string_value>(value_).bytes;
    if (printable_latin1(s)) {
      quoted_into(out, s, '"');
    } else {
      out.push_back('[');
      for (std::size_t i = 0; i < s.size(); ++i) {
        if (i) out.push_back(',');
        out += std::to_string(static_cast<unsigned char>(s[i]));
      }
      out.push_back(']');
    }
    return;
  }
  case 10: {
    out += "#{";
    const auto& m = std::get<map_value>(value_).entries;
    for (std::size_t i = 0; i < m.size(); ++i) {
      if (i) out.push_back(',');
      m[i].first.write(out);
      out += " => ";
      m[i].second.write(out);
    }
    out.push_back('}');
    return;
  }
  default: {
    const opaque_parts& o = std::get<opaque_value>(value_).parts;
    static constexpr const char* names[] = {"Ref", "Fun", "Port", "Pid"};
    out += "#";
    out += names[static_cast<int>(o.what) - static_cast<int>(kind::reference)];
    out.push_back('<');
    bool first = true;
    auto dot = [&] {
      if (!first) out.push_back('.');
      first = false;
    };
    for (std::size_t i = 0; i < o.fields.size(); ++i) {
      if (o.layout[i] == 't') {
        dot();
        o.fields[i].write(out);
        continue;
      }
      // Raw fields: their big-endian 32-bit words (bytes, when not whole words).
      const std::string& raw = *o.fields[i].bytes();
      if (raw.size() % 4 != 0) {
        for (unsigned char c : raw) {
          dot();
          out += std::to_string(c);
        }
        continue;
      }
      for (std::size_t w = 0; w < raw.size(); w += 4) {
        std::uint32_t v = 0;
        for (std::size_t k = 0; k < 4; ++k) v = (v << 8) | static_cast<unsigned char>(raw[w + k]);
        dot();
        out += std::to_string(v);
      }
    }
    out.push_back('>');
    return;
  }
  }
}

std::string term::to_string() const {
  std::string out;
  write(out);
  return out;
}

std::ostream& operator<<(std::ostream& os, const term& t) { return os << t.to_string(); }

} // namespace grove::erps
