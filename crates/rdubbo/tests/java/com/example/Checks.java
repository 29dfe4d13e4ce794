package com.example;

import java.util.Objects;

/**
 * What the Java consumers print per check: "ok NAME [info]" or "FAIL NAME: detail", with
 * the counts for their final "DONE p passed, f failed" line.
 */
public final class Checks {
    private Checks() {
    }

    /** A check body: returns extra text for the ok line (or null), throws on failure. */
    public interface Check {
        String run() throws Throwable;
    }

    /** A failed expectation with its detail. */
    public static final class Fail extends RuntimeException {
        private static final long serialVersionUID = 1L;

        public Fail(String detail) {
            super(detail);
        }
    }

    static int passed;
    static int failed;

    public static void check(String name, Check body) {
        try {
            String info = body.run();
            passed++;
            System.out.println("ok " + name + (info == null ? "" : " " + info));
        } catch (Fail f) {
            failed++;
            System.out.println("FAIL " + name + ": " + f.getMessage());
        } catch (Throwable t) {
            failed++;
            System.out.println("FAIL " + name + ": unexpected " + t.getClass().getName() + ": "
                    + oneLine(String.valueOf(t.getMessage())));
        }
        System.out.flush();
    }

    public static String oneLine(String s) {
        s = s.replace('\n', ' ').replace('\r', ' ');
        return s.length() > 700 ? s.substring(0, 700) + "..." : s;
    }

    public static void expectEq(Object expected, Object actual) {
        if (!Objects.equals(expected, actual)) {
            throw new Fail("expected " + expected + " (" + cls(expected) + ") got " + actual + " ("
                    + cls(actual) + ")");
        }
    }

    public static String cls(Object o) {
        return o == null ? "null" : o.getClass().getName();
    }

    /** The final line. */
    public static void done() {
        System.out.println("DONE " + passed + " passed, " + failed + " failed");
    }
}
