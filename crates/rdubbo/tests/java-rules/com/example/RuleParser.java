package com.example;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import org.apache.dubbo.common.URL;
import org.apache.dubbo.rpc.cluster.Configurator;
import org.apache.dubbo.rpc.cluster.configurator.override.OverrideConfigurator;
import org.apache.dubbo.rpc.cluster.configurator.parser.ConfigParser;

/**
 * Reads configurator documents as Java Dubbo does (ConfigParser) and applies them
 * (OverrideConfigurator), for rdubbo's comparison test.
 *
 * For every NAME.yml in the directory given: prints "== NAME", then each override URL
 * (toFullString) or "ERROR"; then, for every line "<url>" of NAME.targets, the
 * parameters the rules changed or added, sorted: "=> k=v&k=v".
 */
public class RuleParser {
    public static void main(String[] args) throws Exception {
        List<Path> docs;
        try (Stream<Path> files = Files.list(Paths.get(args[0]))) {
            docs = files.filter(p -> p.toString().endsWith(".yml")).sorted().collect(Collectors.toList());
        }
        for (Path doc : docs) {
            String name = doc.getFileName().toString().replace(".yml", "");
            System.out.println("== " + name);
            String text = new String(Files.readAllBytes(doc), StandardCharsets.UTF_8);
            List<URL> urls;
            try {
                urls = ConfigParser.parseConfigurators(text);
            } catch (Throwable t) {
                System.out.println("ERROR");
                continue;
            }
            for (URL u : urls) {
                System.out.println(u.toFullString());
            }
            Path targets = doc.resolveSibling(name + ".targets");
            if (!Files.exists(targets)) {
                continue;
            }
            List<Configurator> configurators = new ArrayList<>();
            for (URL u : urls) {
                configurators.add(new OverrideConfigurator(u));
            }
            Collections.sort(configurators);
            for (String line : Files.readAllLines(targets, StandardCharsets.UTF_8)) {
                if (line.trim().isEmpty()) {
                    continue;
                }
                URL before = URL.valueOf(line.trim());
                URL after = before;
                for (Configurator c : configurators) {
                    after = c.configure(after);
                }
                Map<String, String> changed = new TreeMap<>();
                for (Map.Entry<String, String> e : after.getParameters().entrySet()) {
                    if (!e.getValue().equals(before.getParameter(e.getKey()))) {
                        changed.put(e.getKey(), e.getValue());
                    }
                }
                System.out.println("=> " + changed.entrySet().stream()
                        .map(e -> e.getKey() + "=" + e.getValue())
                        .collect(Collectors.joining("&")));
            }
        }
    }
}
