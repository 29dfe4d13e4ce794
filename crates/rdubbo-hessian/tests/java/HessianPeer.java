// Test-only peer for rdubbo-hessian's conformance test: Caucho Hessian (Debian
// libhessian-java) encodes a corpus of Java values and decodes what rdubbo encodes.
//
//   java HessianPeer encode          prints "name<TAB>hex" for every case
//   java HessianPeer decode < lines  reads "name<TAB>hex", prints "name<TAB>OK" or a reason
import com.caucho.hessian.io.AbstractSerializerFactory;
import com.caucho.hessian.io.BigDecimalDeserializer;
import com.caucho.hessian.io.Deserializer;
import com.caucho.hessian.io.Hessian2Input;
import com.caucho.hessian.io.Hessian2Output;
import com.caucho.hessian.io.Serializer;
import com.caucho.hessian.io.SerializerFactory;
import com.caucho.hessian.io.StringValueSerializer;
import java.io.*;
import java.lang.reflect.*;
import java.math.BigDecimal;
import java.util.*;

public class HessianPeer {
    public enum Kind { GOLD, SILVER }

    public static class Address implements Serializable {
        public String city;
        public Integer zip;
        public Address() {}
        public Address(String city, Integer zip) { this.city = city; this.zip = zip; }
    }

    // Caucho writes primitive and java.lang fields first, then the others, each group in
    // declaration order.
    public static class User implements Serializable {
        public String name;
        public int age;
        public double score;
        public boolean active;
        public long id;
        public List<String> tags;
        public Map<String, Integer> attrs;
        public Address home;
        public Kind kind;
        public Date born;
        public byte[] avatar;
        public BigDecimal balance;
    }

    static User user() {
        User u = new User();
        u.name = "ann";
        u.age = 42;
        u.score = 12.25;
        u.active = true;
        u.id = 9_000_000_000L;
        u.tags = new ArrayList<>(Arrays.asList("admin", "ops"));
        u.attrs = new HashMap<>();
        u.attrs.put("x", 1);
        u.home = new Address("Hangzhou", 310000);
        u.kind = Kind.SILVER;
        u.born = new Date(894621091000L);
        u.avatar = new byte[] {1, 2, 3};
        u.balance = new BigDecimal("1234.50");
        return u;
    }

    static byte[] bytes(int n) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) b[i] = (byte) (i * 7);
        return b;
    }

    static String repeat(String s, int n) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < n; i++) sb.append(s);
        return sb.toString();
    }

    static LinkedHashMap<String, Object> corpus() {
        LinkedHashMap<String, Object> c = new LinkedHashMap<>();
        int[] ints = {0, -16, 47, 48, -2048, 2047, -2049, -262144, 262143, 262144, Integer.MIN_VALUE, Integer.MAX_VALUE};
        for (int i : ints) c.put("int " + i, i);
        long[] longs = {0, -8, 15, 16, -2048, 2047, -262144, 262143, 262144, 2147483647L, 2147483648L, Long.MIN_VALUE, Long.MAX_VALUE};
        for (long l : longs) c.put("long " + l, l);
        double[] doubles = {0.0, 1.0, -128.0, 127.0, 128.0, -32768.0, 32767.0, 32768.0, 12.25, 0.1, -0.001, 0.3333, 1e300, -2.5e-300, Double.MAX_VALUE, Double.NaN, Double.POSITIVE_INFINITY};
        for (double d : doubles) c.put("double " + d, d);
        c.put("null", null);
        c.put("true", true);
        c.put("false", false);
        c.put("string empty", "");
        c.put("string hello", "hello");
        c.put("string accents", "h\u00e9llo w\u00f6rld \u4e2d\u6587");
        c.put("string emoji", "a\ud83d\ude00b");
        c.put("string 31", repeat("x", 31));
        c.put("string 32", repeat("x", 32));
        c.put("string 1023", repeat("y", 1023));
        c.put("string 1024", repeat("y", 1024));
        c.put("string 32768", repeat("z", 32768));
        c.put("string 40000 chunked", repeat("z", 40000));
        c.put("string 70000 non-ascii", repeat("\u00e9", 70000));
        c.put("binary 0", bytes(0));
        c.put("binary 15", bytes(15));
        c.put("binary 16", bytes(16));
        c.put("binary 1023", bytes(1023));
        c.put("binary 1024", bytes(1024));
        c.put("binary 5000", bytes(5000));
        c.put("binary 100000", bytes(100000));
        c.put("date ms", new Date(894621091000L));
        c.put("date minutes", new Date(894621060000L));
        c.put("date before epoch", new Date(-1000L));
        c.put("list empty", new ArrayList<>());
        c.put("list mixed", new ArrayList<>(Arrays.asList(1, "two", 3.5, null, true)));
        List<Integer> ten = new ArrayList<>();
        for (int i = 0; i < 10; i++) ten.add(i);
        c.put("list ten", ten);
        c.put("int array", new int[] {0, 1});
        c.put("string array", new String[] {"a", "b"});
        c.put("long array 8", new long[] {1, 2, 3, 4, 5, 6, 7, 8});
        c.put("nested list", new ArrayList<>(Arrays.asList(new ArrayList<>(Arrays.asList(1, 2)), new ArrayList<>())));
        c.put("map empty", new HashMap<>());
        Map<String, Integer> m = new HashMap<>();
        m.put("a", 1);
        c.put("map one", m);
        TreeMap<String, Integer> tm = new TreeMap<>();
        tm.put("a", 1);
        tm.put("b", 2);
        c.put("treemap", tm);
        Map<Integer, String> im = new HashMap<>();
        im.put(1, "fee");
        c.put("map int key", im);
        c.put("enum", Kind.GOLD);
        c.put("bigdecimal", new BigDecimal("-98765.4321"));
        c.put("address", new Address("Ningbo", null));
        c.put("user", user());
        Address shared = new Address("Shared", 1);
        c.put("shared ref", new ArrayList<>(Arrays.asList(shared, shared)));
        c.put("two users", new ArrayList<>(Arrays.asList(user(), user())));
        c.put("exception", new IllegalStateException("bad state"));
        return c;
    }

    /** A canonical text of a decoded value, for comparing graphs. */
    static String repr(Object o, IdentityHashMap<Object, Boolean> seen) throws Exception {
        if (o == null) return "null";
        if (o instanceof String) return "S\"" + o + "\"";
        if (o instanceof Integer) return "I" + o;
        if (o instanceof Long) return "L" + o;
        if (o instanceof Double) return "D" + o;
        if (o instanceof Boolean) return "B" + o;
        if (o instanceof Date) return "T" + ((Date) o).getTime();
        if (o instanceof BigDecimal) return "BD" + o;
        if (o instanceof Enum) return "E" + o.getClass().getName() + "." + ((Enum<?>) o).name();
        if (o instanceof byte[]) return "bin" + Arrays.toString((byte[]) o);
        if (o instanceof Throwable) return "X" + o.getClass().getName() + ":" + ((Throwable) o).getMessage();
        if (seen.containsKey(o)) return "cycle";
        if (o.getClass().isArray()) {
            StringBuilder sb = new StringBuilder("[");
            for (int i = 0; i < Array.getLength(o); i++) sb.append(repr(Array.get(o, i), seen)).append(',');
            return sb.append(']').toString();
        }
        if (o instanceof List) {
            StringBuilder sb = new StringBuilder("[");
            for (Object e : (List<?>) o) sb.append(repr(e, seen)).append(',');
            return sb.append(']').toString();
        }
        if (o instanceof Map) {
            TreeMap<String, String> sorted = new TreeMap<>();
            for (Map.Entry<?, ?> e : ((Map<?, ?>) o).entrySet()) sorted.put(repr(e.getKey(), seen), repr(e.getValue(), seen));
            return "{" + sorted + "}";
        }
        seen.put(o, true);
        TreeMap<String, String> fields = new TreeMap<>();
        for (Field f : o.getClass().getDeclaredFields()) {
            if (Modifier.isStatic(f.getModifiers())) continue;
            f.setAccessible(true);
            fields.put(f.getName(), repr(f.get(o), seen));
        }
        seen.remove(o);
        return o.getClass().getName() + fields;
    }

    static String repr(Object o) throws Exception {
        return repr(o, new IdentityHashMap<>());
    }

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) sb.append(String.format("%02x", x));
        return sb.toString();
    }

    static byte[] unhex(String s) {
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++) b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        return b;
    }

    /**
     * Caucho's factory, plus BigDecimal as an object with one field "value" (its text),
     * as Dubbo's hessian-lite registers it: bare Caucho 4.0.38 on Java 17 would write its
     * private fields instead and lose compact values.
     */
    static final SerializerFactory FACTORY = new SerializerFactory();
    static {
        FACTORY.addFactory(new AbstractSerializerFactory() {
            public Serializer getSerializer(Class cl) {
                return cl == BigDecimal.class ? new StringValueSerializer() : null;
            }
            public Deserializer getDeserializer(Class cl) {
                return cl == BigDecimal.class ? new BigDecimalDeserializer() : null;
            }
        });
    }

    static byte[] encode(Object o) throws IOException {
        ByteArrayOutputStream bos = new ByteArrayOutputStream();
        Hessian2Output out = new Hessian2Output(bos);
        out.setSerializerFactory(FACTORY);
        out.writeObject(o);
        out.flush();
        return bos.toByteArray();
    }

    public static void main(String[] args) throws Exception {
        LinkedHashMap<String, Object> corpus = corpus();
        if (args[0].equals("encode")) {
            for (Map.Entry<String, Object> e : corpus.entrySet()) {
                System.out.println(e.getKey() + "\t" + hex(encode(e.getValue())));
            }
            return;
        }
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            String[] parts = line.split("\t", 2);
            String name = parts[0];
            try {
                Hessian2Input hin = new Hessian2Input(new ByteArrayInputStream(unhex(parts[1])));
                hin.setSerializerFactory(FACTORY);
                Object got = hin.readObject();
                if (name.equals("shared ref from rdubbo")) {
                    List<?> l = (List<?>) got;
                    boolean same = l.size() == 2 && l.get(0) == l.get(1) && l.get(0) instanceof Address;
                    System.out.println(name + "\t" + (same ? "OK" : "MISMATCH not one shared Address: " + repr(got)));
                    continue;
                }
                if (name.equals("exception from rdubbo")) {
                    boolean ok = got instanceof RuntimeException && "boom".equals(((Throwable) got).getMessage());
                    System.out.println(name + "\t" + (ok ? "OK" : "MISMATCH " + repr(got)));
                    continue;
                }
                if (!corpus.containsKey(name)) {
                    System.out.println(name + "\tMISMATCH no such case");
                    continue;
                }
                String want = repr(corpus.get(name));
                String have = repr(got);
                System.out.println(name + "\t" + (want.equals(have) ? "OK" : "MISMATCH want " + want + " got " + have));
            } catch (Throwable t) {
                System.out.println(name + "\tERROR " + t);
            }
        }
    }
}
