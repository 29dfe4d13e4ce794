package com.example;

import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.Map;

/** The fixed sample data shared by JavaProvider and JavaConsumer (and mirrored by rdubbo tests). */
public final class Samples {
    private Samples() {
    }

    /** What getUser(id) returns for id &gt;= 0: "ann", age id, 2023-11-14T22:13:20Z, 1234.50, GOLD. */
    public static User user(int age) {
        User u = new User();
        u.setName("ann");
        u.setAge(age);
        u.setBorn(new Date(1700000000000L));
        u.setBalance(new BigDecimal("1234.50"));
        u.setTags(new ArrayList<>(Arrays.asList("admin", "ops")));
        u.setAddress(new Address("Hangzhou", "Wenyi Rd"));
        u.setLevel(Level.GOLD);
        Map<String, Integer> scores = new LinkedHashMap<>();
        scores.put("math", 90);
        u.setScores(scores);
        return u;
    }

    /** A user with just a name and an age; every nullable field is null. */
    public static User plain(String name, int age) {
        User u = new User();
        u.setName(name);
        u.setAge(age);
        return u;
    }
}
