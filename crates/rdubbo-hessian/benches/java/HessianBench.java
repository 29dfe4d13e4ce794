// Caucho Hessian (Debian libhessian-java) decoding and encoding the interop POJO
// com.example.User (crates/rdubbo/tests/java/com/example), for the side-by-side figures of
// benches/java_compare.rs. Not a test: a microbenchmark.
//
//   java HessianBench <hex> <warm-up seconds> <rounds> <ms per round>
//
// decodes the bytes given in hex (one com.example.User) over and over: first for the warm-up
// (so the JIT compiles the hot paths), then in rounds; prints
//   java-encoded <hex of Java's own encoding of the decoded object>
//   decode ns/op <median> min <min> max <max>
//   encode ns/op <median> min <min> max <max>
import com.caucho.hessian.io.AbstractSerializerFactory;
import com.caucho.hessian.io.BigDecimalDeserializer;
import com.caucho.hessian.io.Deserializer;
import com.caucho.hessian.io.Hessian2Input;
import com.caucho.hessian.io.Hessian2Output;
import com.caucho.hessian.io.Serializer;
import com.caucho.hessian.io.SerializerFactory;
import com.caucho.hessian.io.StringValueSerializer;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.math.BigDecimal;
import java.util.Arrays;

public class HessianBench {
    static long sink;

    static byte[] unhex(String s) {
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return b;
    }

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) sb.append(String.format("%02x", x));
        return sb.toString();
    }

    interface Op {
        void run() throws Exception;
    }

    /** Runs op for the warm-up, then `rounds` rounds of about `roundMs`; ns/op per round. */
    static double[] measure(Op op, double warmupSeconds, int rounds, int roundMs) throws Exception {
        long warmEnd = System.nanoTime() + (long) (warmupSeconds * 1e9);
        long calibrated = 0;
        long t0 = System.nanoTime();
        while (System.nanoTime() < warmEnd) {
            for (int i = 0; i < 1000; i++) op.run();
            calibrated += 1000;
        }
        double nsPerOp = (System.nanoTime() - t0) / (double) Math.max(calibrated, 1);
        long n = Math.max(1000, (long) (roundMs * 1e6 / Math.max(nsPerOp, 1)));
        double[] out = new double[rounds];
        for (int r = 0; r < rounds; r++) {
            long start = System.nanoTime();
            for (long i = 0; i < n; i++) op.run();
            out[r] = (System.nanoTime() - start) / (double) n;
        }
        Arrays.sort(out);
        return out;
    }

    static void report(String what, double[] r) {
        System.out.printf("%s ns/op %.1f min %.1f max %.1f%n", what, r[r.length / 2], r[0], r[r.length - 1]);
    }

    public static void main(String[] args) throws Exception {
        byte[] bytes = unhex(args[0]);
        double warmup = Double.parseDouble(args[1]);
        int rounds = Integer.parseInt(args[2]);
        int roundMs = Integer.parseInt(args[3]);

        // Caucho's factory plus BigDecimal as one field "value" (its text), as Dubbo's
        // hessian-lite registers it (and as tests/java/HessianPeer.java does).
        SerializerFactory factory = new SerializerFactory();
        factory.addFactory(new AbstractSerializerFactory() {
            public Serializer getSerializer(Class cl) {
                return cl == BigDecimal.class ? new StringValueSerializer() : null;
            }

            public Deserializer getDeserializer(Class cl) {
                return cl == BigDecimal.class ? new BigDecimalDeserializer() : null;
            }
        });
        Hessian2Input in = new Hessian2Input(null);
        in.setSerializerFactory(factory);
        in.init(new ByteArrayInputStream(bytes));
        Object user = in.readObject();
        if (!user.getClass().getName().equals("com.example.User")) {
            throw new IllegalStateException("decoded a " + user.getClass());
        }

        ByteArrayOutputStream bos = new ByteArrayOutputStream(512);
        Hessian2Output out = new Hessian2Output(bos);
        out.setSerializerFactory(factory);
        out.writeObject(user);
        out.flush();
        System.out.println("java-encoded " + hex(bos.toByteArray()));
        System.out.println("decoded " + user);

        double[] decode = measure(() -> {
            in.init(new ByteArrayInputStream(bytes));
            Object o = in.readObject();
            sink += ((com.example.User) o).getAge();
        }, warmup, rounds, roundMs);
        report("decode", decode);

        double[] encode = measure(() -> {
            bos.reset();
            out.init(bos);
            out.writeObject(user);
            out.flush();
            sink += bos.size();
        }, warmup, rounds, roundMs);
        report("encode", encode);
        System.out.println("sink " + sink);
    }
}
